"""``Adafactor``: ``torch.optim.Adafactor``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import check_bool, check_range
from descentlab.rules.adafactor import adafactor_factored, adafactor_vector
from descentlab.rules.plan import StepPlan

#: The key marking which part of a group one plan steps (see ``Adafactor._step_group``); never an option.
_FACTORED = "_adafactor_factored"


def factor_shapes(shape: torch.Size) -> tuple[list[int], list[int]]:
    """The shapes of ``row_var`` (the last dimension reduced to 1) and ``col_var`` (the second last)."""
    row, col = list(shape), list(shape)
    row[-1] = 1
    col[-2] = 1
    return row, col


class Adafactor(RuleOptimizer):
    r"""Adafactor — a drop-in for ``torch.optim.Adafactor``: Adam-like steps with a second moment of sublinear
    memory (one number per row and per column of a matrix).

    Symbols: ``t`` = ``state["step"]``, ``τ`` = ``beta2_decay``, ``η`` = ``lr``, ``(ε₁, ε₂)`` = ``eps``
    (ε₁ = None: the dtype's machine epsilon), ``d`` the clipping threshold, ``λ`` = ``weight_decay``,
    ``RMS(x) = ‖x‖₂/√numel(x)``; state ``R`` = ``row_var``, ``C`` = ``col_var`` (tensors of two or more dimensions,
    factored over the last two) or ``V`` = ``variance`` (vectors and 0-d tensors), all starting at 0::

        g ← −g if maximize
        β̂₂ = 1 − t^τ;   ρ = min(η, 1/√t);   α = max(ε₂, RMS(w)) ρ;   w ← w (1 − η λ)
        matrix:  R ← β̂₂ R + (1 − β̂₂) mean_last(g²);   C ← β̂₂ C + (1 − β̂₂) mean_second_last(g²)
                 V̂ = R C / max(mean(R), ε₁)
        vector:  V ← β̂₂ V + (1 − β̂₂) g²;   V̂ = V
        U = g / max(√V̂, ε₁);   w ← w − α / max(1, RMS(U)/d) · U

    Conventions: the paper caps ρ at 0.01 (here η, whose default is 0.01), has no weight decay, and adds ε₁ to
    g² in the factors; torch clamps with ε₁ afterwards, as this class does (equations and notes:
    :mod:`descentlab.rules.adafactor`). The step scales with the weights' RMS: parameters at zero move by ε₂ρ.
    With ``eps=(None, …)`` a group mixing dtypes uses each tensor's machine epsilon (torch: the first's).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.ones(2, 3))
        >>> opt = descentlab.Adafactor([w])
        >>> w.grad = torch.ones(2, 3); opt.step()
        >>> round(w[0, 0].item(), 4), sorted(opt.state[w])           # α = RMS(w)·min(η, 1) = 0.01
        (0.99, ['col_var', 'row_var', 'step'])
    """

    #: The step is not −η·D(state, g): η caps the relative step (ρ = min(η, 1/√t)) and scales the decay, so the
    #: race runs each rate on its own (lab.race reads this).
    step_is_linear_in_lr = False

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_range("beta2_decay", group["beta2_decay"], -float("inf"), 0.0, high_open=False)
        eps = group["eps"]
        if not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise ValueError(f"eps must be a pair (eps1 or None, eps2), got {eps!r}")
        if eps[0] is not None:
            check_range("eps[0]", eps[0])
        check_range("eps[1]", eps[1])
        check_range("d", group["d"], 1.0)
        check_range("weight_decay", group["weight_decay"])
        check_bool("maximize", group["maximize"])
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        if param.dim() > 1:
            row, col = factor_shapes(param.shape)
            state["row_var"] = param.new_zeros(row)
            state["col_var"] = param.new_zeros(col)
        else:
            state["variance"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        """The plan of the group's factored tensors (dim ≥ 2), or of its vectors when the group is marked so."""
        factored = group.get(_FACTORED, True)
        eps1, eps2 = group["eps"]
        hp = dict(lr=float(group["lr"]), beta2_decay=float(group["beta2_decay"]),
                  eps1=None if eps1 is None else float(eps1), eps2=float(eps2), d=float(group["d"]),
                  weight_decay=float(group["weight_decay"]))
        if factored:
            return StepPlan(adafactor_factored, ("row_var", "col_var"), hp, maximize=group["maximize"],
                            counts_steps=True)
        return StepPlan(adafactor_vector, ("variance",), hp, maximize=group["maximize"], counts_steps=True)

    def _step_group(self, group: dict[str, Any], grad_inv_scale: float = 0.0) -> None:
        """The state layout depends on the tensor (factored for dim ≥ 2), so a group is stepped as two parts, each
        with its plan, on the usual paths. The parts are kept (one dict per group and layout), so every step
        hands the executors the same two dicts."""
        parts: dict[tuple[int, bool], dict[str, Any]] = self.__dict__.setdefault("_adafactor_parts", {})
        for factored in (True, False):
            params = []
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.is_complex():
                    raise RuntimeError("Adafactor does not support complex parameters")
                if (param.grad.dim() > 1) == factored:
                    params.append(param)
            if not params:
                continue
            part = parts.setdefault((id(group), factored), {})
            part.clear()
            part.update(group)
            part["params"], part[_FACTORED] = params, factored
            super()._step_group(part, grad_inv_scale)

    def _check_loaded_state(self, name: str, param: Tensor, group: dict[str, Any], entry: dict[str, Any],
                            saved_id: Any) -> None:
        """As every optimizer checks a loaded state, with ``row_var`` / ``col_var`` shaped as factors."""
        expected: dict[str, Any] = {}
        self._init_state(torch.empty_like(param, device="meta"), group, expected)
        wanted = {key: tuple(value.shape) for key, value in expected.items() if key != "step"}
        for key, shape in wanted.items():
            value = entry.get(key)
            if isinstance(value, Tensor) and tuple(value.shape) != shape:
                raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {saved_id} has shape "
                                 f"{tuple(value.shape)}, this optimizer expects {shape}")
        plain = {key: (torch.empty_like(param, device="meta") if key in wanted else value)
                 for key, value in entry.items()}
        super()._check_loaded_state(name, param, group, plain, saved_id)
