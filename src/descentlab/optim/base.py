"""The adapter that turns a rule (a plain function over tensors) into a ``torch.optim.Optimizer``.

It owns everything that is not math: parameter groups and their validation, lazy state creation,
the closure, ``torch.no_grad()``, complex parameters (viewed as pairs of reals), sparse-gradient
refusal and the defaults restored when a ``state_dict`` from ``torch.optim`` lacks descentlab's
options. A subclass says only which state it needs and which rule to call.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from descentlab.optim.validation import check_choice

_FUSED: Any = None


def _fused_package() -> Any:
    """``descentlab.fused``, imported at the first fused step (not at ``import descentlab``) and kept: an import
    statement in the step costs a microsecond a call. Its attributes are looked up each call, so tests can
    patch them."""
    global _FUSED
    if _FUSED is None:
        import descentlab.fused

        _FUSED = descentlab.fused
    return _FUSED

#: Execution paths: ``"reference"`` runs the rule tensor by tensor; ``"fused"`` steps large tensors with
#: a compiled one-pass kernel where one exists (descentlab/fused/, docs/speed.md); ``"auto"`` does so
#: only once the compile cost is repaid (large tensors, many steps), else the reference path.
IMPLS: tuple[str, ...] = ("auto", "reference", "fused")
#: What a step does with a non-finite (inf / NaN) gradient: ``"ignore"`` (PyTorch's behaviour, the
#: default: the step is taken and NaN propagates), ``"skip"`` (no parameter or state of any group
#: changes; ``skipped_steps`` counts them) or ``"raise"`` (``FloatingPointError`` naming the tensor).
NONFINITE_POLICIES: tuple[str, ...] = ("ignore", "skip", "raise")
COMMON_OPTIONS: tuple[str, ...] = ("impl", "nonfinite", "state_dtype")
#: ``state_dtype``: ``None`` keeps the state in each parameter's dtype (torch's behaviour); ``torch.float32`` /
#: ``torch.float64`` keeps it — and computes the step — in that dtype for parameters of lower precision
#: (bf16 / fp16 parameters with fp32 state), rounding the result into the parameter.
STATE_DTYPES: tuple[Any, ...] = (None, torch.float32, torch.float64)
#: Version of descentlab's additions to a ``state_dict`` (the ``descentlab_format`` entry); a state_dict
#: without the entry (say, from ``torch.optim``) is accepted, one from a newer format is refused.
STATE_FORMAT = 1


def scalar_dtype() -> torch.dtype:
    """The dtype PyTorch uses for ``state["step"]``: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def new_step_counter() -> Tensor:
    """``state["step"]`` exactly as ``torch.optim`` stores it: a 0-d CPU tensor at 0."""
    return torch.tensor(0.0, dtype=scalar_dtype())


def _real_view(t: Any) -> Any:
    return torch.view_as_real(t) if isinstance(t, Tensor) and t.is_complex() else t


class RuleOptimizer(Optimizer):
    """Base of every descentlab optimizer.

    Subclasses implement:

    * ``_validate(group)`` – raise ``ValueError`` for a bad hyperparameter of one group;
    * ``_init_state(param, group, state)`` – fill an empty ``state`` dict for ``param``;
    * ``_update(param, grad, state, group)`` – call the rule for one tensor (``grad`` is the raw
      gradient; the subclass applies ``maximize`` / weight decay through the shared helpers).

    ``_step_group(group)`` loops over the group's tensors; a faster path may override it.
    """

    #: Options added by descentlab on top of torch's; restored from ``defaults`` when a loaded
    #: ``state_dict`` (say, one saved by ``torch.optim``) lacks them.
    extra_options: tuple[str, ...] = ()
    #: ``torch.amp.GradScaler`` hands the scale and the inf flag to ``step`` (as to torch's fused optimizers)
    #: through the ``grad_scale`` / ``found_inf`` attributes: a step with ``found_inf`` is skipped whole, and
    #: gradients are unscaled inside the step (in the fused kernels' single pass), leaving ``.grad`` unscaled
    #: as ``GradScaler.unscale_`` would.
    _step_supports_amp_scaling = True
    #: Complex parameters are stepped as pairs of reals (torch's Adam, RMSprop, Adagrad, … do the same);
    #: ``SGD`` steps them in complex arithmetic, as ``torch.optim.SGD`` does, so it sets this to False.
    complex_as_real: bool = True

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        defaults = {"impl": "auto", "nonfinite": "ignore", "state_dtype": None, **defaults}
        self._validate_group(dict(defaults))
        #: Steps skipped because a gradient was not finite (``nonfinite="skip"``).
        self.skipped_steps = 0
        super().__init__(params, defaults)

    # -- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group.get("params") if isinstance(param_group, dict) else None
        if isinstance(params, (list, tuple)) and len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears twice in the same param group; list each tensor once")
        super().add_param_group(param_group)
        index = len(self.param_groups) - 1
        try:
            self._validate_group(self.param_groups[index])
        except ValueError as err:
            self.param_groups.pop()
            if index > 0:
                raise ValueError(f"param group {index}: {err}") from None
            raise

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "skipped_steps": self.skipped_steps}  # torch keeps 3 entries only

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("skipped_steps", 0)
        for group in self.param_groups:
            for key in self.extra_options:
                group.setdefault(key, self.defaults[key])
            for key, value in self.defaults.items():
                group.setdefault(key, value)

    # -- state_dict ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict`` plus a ``descentlab_format`` marker (torch.optim ignores it when loading)."""
        state = super().state_dict()
        state["descentlab_format"] = STATE_FORMAT
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Check ``state_dict`` fits this optimizer — format version, state keys of this rule, tensor shapes —
        with a message naming the culprit, then load it as torch does."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("not an optimizer state_dict: it needs 'state' and 'param_groups'")
        version = state_dict.get("descentlab_format", STATE_FORMAT)
        if not isinstance(version, int) or version > STATE_FORMAT:
            raise ValueError(f"state_dict has descentlab_format {version!r}; this descentlab reads formats up to "
                             f"{STATE_FORMAT} — upgrade descentlab to load it")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for index, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {index}: state_dict has {len(saved['params'])} parameters, this "
                                 f"optimizer has {len(group['params'])}")
            merged = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            for key in self.extra_options + COMMON_OPTIONS:
                merged.setdefault(key, self.defaults[key])
            for saved_id, param in zip(saved["params"], group["params"]):
                entry = state_dict["state"].get(saved_id)
                if entry:
                    self._check_loaded_state(type(self).__name__, param, merged, entry, saved_id)
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "descentlab_format"})
        self._restore_wide_state(state_dict)

    def _restore_wide_state(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` casts floating state to each parameter's dtype; a parameter with a wider
        ``state_dtype`` gets its saved state back at full precision instead (0-d entries such as NAdam's
        ``mu_product`` in the dtype they were saved in; ``step`` torch leaves alone)."""
        for saved, group in zip(state_dict["param_groups"], self.param_groups):
            for saved_id, param in zip(saved["params"], group["params"]):
                wide = self._wide_dtype(param, group)
                entry = state_dict["state"].get(saved_id)
                if wide is None or not entry:
                    continue
                for key, value in entry.items():
                    if isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0:
                        self.state[param][key] = value.to(dtype=wide, device=param.device, copy=True)
                    elif isinstance(value, Tensor) and value.is_floating_point() and key != "step":
                        self.state[param][key] = value.to(device=param.device, copy=True)

    def _check_loaded_state(self, name: str, param: Tensor, group: dict[str, Any], entry: dict[str, Any],
                            saved_id: Any) -> None:
        expected: dict[str, Any] = {}
        self._init_state(torch.empty_like(param, device="meta"), group, expected)
        if set(entry) != set(expected):
            raise ValueError(f"{name}.load_state_dict: parameter {saved_id} has state {sorted(entry)}, but this "
                             f"optimizer keeps {sorted(expected)} — was the state_dict saved by another optimizer "
                             "or with other options?")
        for key, value in entry.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {saved_id} has shape "
                                 f"{tuple(value.shape)}, the parameter has shape {tuple(param.shape)}")

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_choice("impl", group["impl"], IMPLS)
        check_choice("nonfinite", group["nonfinite"], NONFINITE_POLICIES)
        if group.get("state_dtype") not in STATE_DTYPES:
            raise ValueError(f"state_dtype must be one of None, torch.float32, torch.float64, got "
                             f"{group.get('state_dtype')!r}")
        self._validate(group)

    @staticmethod
    def _wide_dtype(param: Tensor, group: dict[str, Any]) -> torch.dtype | None:
        """The dtype the state is kept and the step computed in when it is wider than ``param``'s, else None."""
        wanted = group.get("state_dtype")
        if wanted is None or not param.is_floating_point() or param.dtype.itemsize >= wanted.itemsize:
            return None
        return wanted

    def _working_copy(self, param: Tensor, group: dict[str, Any]) -> Tensor:
        """``param`` itself, or a copy in the wider ``state_dtype`` that the step updates (then rounded back)."""
        wide = self._wide_dtype(param, group)
        return param if wide is None else param.detach().to(wide)

    def _validate(self, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], first_step: bool) -> None:
        raise NotImplementedError

    # -- the step ------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and bool(found_inf):
            return loss  # GradScaler found inf/NaN: no parameter or state changes, the scale is lowered
        inv_scale = self._grad_inv_scale()
        if not self._gradients_pass_policy():
            self.skipped_steps += 1
            return loss
        for group in self.param_groups:
            self._step_group(group, inv_scale)
        return loss

    def _grad_inv_scale(self) -> float:
        """``1/grad_scale`` rounded to float32 as ``GradScaler`` computes it, or 0.0 without a scaler."""
        scale = getattr(self, "grad_scale", None)
        if scale is None:
            return 0.0
        inv = torch.as_tensor(scale).double().reciprocal().float()
        return float(inv)

    def _gradients_pass_policy(self) -> bool:
        """Apply each group's ``nonfinite`` policy; False means: skip this whole step."""
        passed = True
        for index, group in enumerate(self.param_groups):
            policy = group["nonfinite"]
            if policy == "ignore":
                continue
            for position, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None or grad.is_sparse or bool(torch.isfinite(grad).all()):
                    continue
                if policy == "raise":
                    raise FloatingPointError(
                        f"{type(self).__name__}: non-finite gradient in param group {index}, parameter "
                        f"{position} (shape {tuple(param.shape)}); nonfinite='raise'"
                    )
                passed = False
        return passed

    def _follow_param(self, param: Tensor, state: dict[str, Any]) -> None:
        """A parameter moved to another dtype or device after the optimizer was built (``model.to(…)``):
        move its state along (as ``load_state_dict`` does), with a warning the first time."""
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dim() > 0 and (value.dtype != param.dtype
                                                                  or value.device != param.device):
                if not getattr(self, "_warned_moved", False):
                    import warnings

                    warnings.warn(f"{type(self).__name__}: a parameter moved to {param.dtype} on {param.device} after "
                                  f"its state was created ({value.dtype} on {value.device}); the state is moved "
                                  "along", stacklevel=4)
                    self._warned_moved = True
                state[key] = value.to(dtype=param.dtype, device=param.device)

    def _step_group(self, group: dict[str, Any], grad_inv_scale: float = 0.0) -> None:
        params = group["params"]
        if group["impl"] != "reference":
            params = _fused_package().fused_cpu_step(self, group, grad_inv_scale)  # one C kernel call per dtype
        for param in params:
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients; "
                    "use torch.optim.SparseAdam or torch.optim.Adagrad for sparse embeddings"
                )
            if grad_inv_scale:
                grad.mul_(torch.tensor(grad_inv_scale, dtype=torch.float32, device=grad.device))  # as unscale_
            state = self.state[param]
            first_step = len(state) == 0
            work = self._working_copy(param, group)
            if work is not param:
                grad = grad.to(work.dtype)
            if first_step:
                self._init_state(work, group, state)
            else:
                self._follow_param(work, state)
            if group["impl"] != "reference" and not first_step and work is param:
                from descentlab.fused import try_fused_update  # compiled kernels off the CPU (fused/dispatch.py)
                if try_fused_update(self, param, grad, state, group):
                    continue
            if work.is_complex() and self.complex_as_real:
                real_state = {k: _real_view(v) for k, v in state.items()}
                self._update(torch.view_as_real(work), torch.view_as_real(grad), real_state, group, first_step)
            else:
                self._update(work, grad, state, group, first_step)
            if work is not param:
                param.copy_(work)  # round the wide result into the parameter's dtype
