"""``LBFGS``: ``torch.optim.LBFGS`` — closure-driven, over the whole parameter vector, one parameter group."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from descentlab.optim.validation import check_choice, check_range
from descentlab.rules.lbfgs import LINE_SEARCHES, remember, strong_wolfe, two_loop_direction


def _check_count(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class LBFGS(Optimizer):
    r"""L-BFGS — a drop-in for ``torch.optim.LBFGS`` (same state, same iterates, bit for bit).

    ``step(closure)`` needs a closure that zeroes the gradients, recomputes the loss, calls ``backward()`` and
    returns the loss; it calls it up to ``max_eval`` times. Every parameter is one flat vector ``x`` (complex
    ones as pairs of reals), so there is one parameter group. With ``g`` the flat gradient, ``s = Δx``,
    ``y = Δg``, ``ρ = 1/(yᵀs)``, memory of ``history_size`` pairs, ``γ`` = ``H_diag``::

        d = −g (first iteration);  else d = −H g by the two-loop recursion over the kept (s, y), H₀ = γ I
        t = min(1, 1/‖g‖₁) η (first iteration), else η;   line_search_fn="strong_wolfe": t from a line search
        x ← x + t d;   keep (y, s) if yᵀs > 1e-10, then γ ← yᵀs / yᵀy

    Up to ``max_iter`` iterations per call; it stops early at ``max|g| ≤ tolerance_grad``, ``gᵀd >
    −tolerance_change``, ``max|t d| ≤ tolerance_change`` or ``|Δf| < tolerance_change``. State (on the first
    parameter, as torch): ``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``,
    ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``. Equations: :mod:`descentlab.rules.lbfgs`.

    Example::

        >>> import torch, descentlab
        >>> x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        >>> opt = descentlab.LBFGS([x], line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = (x[0] ** 2 + 10 * x[1] ** 2)
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)
        >>> bool(x.detach().abs().max() < 1e-4)
        True
    """

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        _check_count("max_iter", max_iter)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        self._validate(defaults)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params: list[Tensor] = self.param_groups[0]["params"]
        self._numel_cache: int | None = None

    @staticmethod
    def _validate(group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        _check_count("max_iter", group["max_iter"])
        _check_count("max_eval", group["max_eval"])
        check_range("tolerance_grad", group["tolerance_grad"])
        check_range("tolerance_change", group["tolerance_change"])
        _check_count("history_size", group["history_size"])
        check_choice("line_search_fn", group["line_search_fn"], LINE_SEARCHES)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; a second group is refused (L-BFGS steps one parameter vector)."""
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` after checking the saved group's options as the constructor checks them."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(groups, list) or len(groups) != 1:
            raise ValueError("LBFGS.load_state_dict: the state_dict must hold exactly one param group")
        try:
            self._validate({**self.defaults, **{k: v for k, v in groups[0].items() if k != "params"}})
        except ValueError as err:
            raise ValueError(f"LBFGS.load_state_dict: {err}") from None
        super().load_state_dict(state_dict)
        self._params = self.param_groups[0]["params"]

    # -- the parameter vector ------------------------------------------------------------------------
    def _numel(self) -> int:
        if self._numel_cache is None:
            self._numel_cache = sum(2 * p.numel() if torch.is_complex(p) else p.numel() for p in self._params)
        return self._numel_cache

    def _gather_flat_grad(self) -> Tensor:
        views = []
        for p in self._params:
            if p.grad is None:
                view = p.new(p.numel()).zero_()
            elif p.grad.is_sparse:
                view = p.grad.to_dense().view(-1)
            else:
                view = p.grad.view(-1)
            if torch.is_complex(view):
                view = torch.view_as_real(view).view(-1)
            views.append(view)
        return torch.cat(views, 0)

    def _add_grad(self, step_size: Any, update: Tensor) -> None:
        offset = 0
        for p in self._params:
            if torch.is_complex(p):
                p = torch.view_as_real(p)
            numel = p.numel()
            p.add_(update[offset: offset + numel].view_as(p), alpha=step_size)
            offset += numel
        if offset != self._numel():
            raise RuntimeError(f"LBFGS: the parameters hold {offset} numbers, {self._numel()} when it was built")

    def _clone_param(self) -> list[Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self._params]

    def _set_param(self, params_data: list[Tensor]) -> None:
        for p, pdata in zip(self._params, params_data, strict=True):
            p.copy_(pdata)

    def _directional_evaluate(self, closure: Callable[[], Any], x: list[Tensor], t: Any,
                              d: Tensor) -> tuple[float, Tensor]:
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # -- the step --------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Up to ``max_iter`` L-BFGS iterations; ``closure`` (required) re-evaluates the model and returns the loss."""
        if closure is None:
            raise TypeError("LBFGS.step needs a closure: step(closure), where closure() zeroes the gradients, "
                            "computes the loss, calls backward() and returns the loss")
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr = group["lr"].squeeze() if isinstance(group["lr"], Tensor) else group["lr"]  # as torch's _to_scalar
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        # the state is global; torch registers it on the first parameter (so load_state_dict casts it)
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if flat_grad.abs().max() <= tolerance_grad:  # already optimal
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")  # noqa: N806 - torch's state key
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # the direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1  # noqa: N806
            else:
                H_diag = remember(flat_grad.sub(prev_flat_grad), d.mul(t), old_dirs, old_stps, ro,  # noqa: N806
                                  history_size, H_diag)
                if "al" not in state:
                    state["al"] = [None] * history_size
                d = two_loop_direction(flat_grad, old_dirs, old_stps, ro, H_diag, state["al"])
            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # the step length
            first: Any = min(1.0, 1.0 / flat_grad.abs().sum())  # a 0-d tensor or 1.0, as torch computes it
            t = first * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(d)  # the directional derivative g·d
            if gtd > -tolerance_change:
                break
            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x: list[Tensor], t: Any, d: Tensor) -> tuple[float, Tensor]:
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                                 max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = flat_grad.abs().max() <= tolerance_grad
            else:
                self._add_grad(t, d)  # a fixed step
                if n_iter != max_iter:  # re-evaluate, except after the last iteration
                    with torch.enable_grad():
                        loss = closure()
                    loss = float(loss)
                    flat_grad = self._gather_flat_grad()
                    opt_cond = flat_grad.abs().max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # the stopping conditions
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change:  # no progress in x
                break
            if abs(loss - prev_loss) < tolerance_change:  # no progress in f
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss
