"""The adapter that turns a rule (a plain function over tensors) into a ``torch.optim.Optimizer``.

It owns everything that is not math: parameter groups and their validation, lazy state creation,
the closure, ``torch.no_grad()``, complex parameters (viewed as pairs of reals), sparse-gradient
refusal and the defaults restored when a ``state_dict`` from ``torch.optim`` lacks descentlab's
options. A subclass says only which state it needs and what its step is — a
:class:`~descentlab.rules.plan.StepPlan` per group — and every executor (the reference loop of
:mod:`descentlab.optim.reference`, the C and compiled kernels of :mod:`descentlab.fused`) reads that plan, so a
subclass keeps every fast path. The ``state_dict`` half lives in :mod:`descentlab.optim.state_dict`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from descentlab.optim.reference import step_reference
from descentlab.optim.state_dict import COMMON_OPTIONS, STATE_FORMAT, StateDictOptimizer
from descentlab.optim.validation import check_capturable, check_choice, check_fused_params
from descentlab.rules.plan import StepPlan

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

#: Execution paths (docs/speed.md): ``"reference"`` runs the rule tensor by tensor; ``"foreach"`` runs it once
#: per device and dtype over all the group's tensors (``torch._foreach_*`` ops); ``"fused"`` steps CPU tensors
#: with C kernels and large tensors elsewhere with a compiled one-pass kernel; ``"torch_fused"`` hands every tensor
#: whose group's convention is exactly torch's (Adam / AdamW / SGD / Adagrad, see ``fused.torch_fused``) to torch's
#: own fused kernels on any device, the CPU included, and the rest to the multi-tensor path; ``"auto"`` (the
#: default) takes the C kernels on the CPU and, elsewhere, torch's fused kernels where the convention is torch's,
#: else the multi-tensor path — the compiled kernels for large tensors once their compile cost is repaid. What a
#: path cannot take goes to the reference loop; a ``capturable=True`` group always takes the reference loop.
IMPLS: tuple[str, ...] = ("auto", "reference", "fused", "foreach", "torch_fused")
#: What a step does with a non-finite (inf / NaN) gradient: ``"ignore"`` (PyTorch's behaviour, the
#: default: the step is taken and NaN propagates), ``"skip"`` (no parameter or state of any group
#: changes; ``skipped_steps`` counts them) or ``"raise"`` (``FloatingPointError`` naming the tensor).
NONFINITE_POLICIES: tuple[str, ...] = ("ignore", "skip", "raise")
#: ``state_dtype``: ``None`` keeps the state in each parameter's dtype (torch's behaviour); ``torch.float32`` /
#: ``torch.float64`` keeps it — and computes the step — in that dtype for parameters of lower precision
#: (bf16 / fp16 parameters with fp32 state), rounding the result into the parameter.
STATE_DTYPES: tuple[Any, ...] = (None, torch.float32, torch.float64)


#: CPU dtypes the default path sends to the multi-tensor path when a rule has no C kernel: where it equals the
#: reference loop bit for bit (bf16 / fp16 keep the reference loop's rounding).
_FOREACH_CPU_DTYPES = (torch.float32, torch.float64)


def scalar_dtype() -> torch.dtype:
    """The dtype PyTorch uses for ``state["step"]``: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def new_step_counter() -> Tensor:
    """``state["step"]`` exactly as ``torch.optim`` stores it: a 0-d CPU tensor at 0."""
    return torch.tensor(0.0, dtype=scalar_dtype())


class RuleOptimizer(StateDictOptimizer):
    """Base of every descentlab optimizer.

    Subclasses implement:

    * ``_validate(group)`` – raise ``ValueError`` for a bad hyperparameter of one group;
    * ``_init_state(param, group, state)`` – fill an empty ``state`` dict for ``param``;
    * ``plan(group)`` – the group's :class:`~descentlab.rules.plan.StepPlan`: which rule, which state slots in
      which order, which named hyperparameters, how ``maximize`` and weight decay apply, whether it counts steps.

    ``_step_group(group)`` hands the plan to the C kernels (CPU) and the rest to the reference loop.
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
    #: The reference loop refuses sparse gradients unless the class sets this (SparseAdam, SGD, Adagrad: their rules
    #: take them, as torch's do);
    #: the C, compiled and multi-tensor paths take only dense (strided) gradients, so sparse ones always reach it.
    accepts_sparse_gradients: bool = False
    #: ``capturable=True`` is taken by the classes whose torch twin takes it (Adam, AdamW, NAdam, RAdam, Adamax,
    #: ASGD, RMSprop, Rprop, Adadelta) and refused by the others. Such a group keeps ``step`` and every 0-d state on
    #: the parameter's device and steps on the reference loop with tensor-valued scalars
    #: (``rules.common.tensor_scalars``): no ``.item()``, no host synchronisation, so the step can be captured in
    #: a CUDA graph. Like torch, it refuses CPU parameters (outside ``torch.compile``).
    supports_capturable: bool = False

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        defaults = {"impl": "auto", "nonfinite": "ignore", "state_dtype": None, **defaults}
        self._validate_group(dict(defaults))
        #: Steps skipped because a gradient was not finite (``nonfinite="skip"``).
        self.skipped_steps = 0
        #: A ``fused=True`` group's parameters are checked as torch checks them (see ``_step``) until a step passes.
        self._need_device_dtype_check_for_fused = True
        super().__init__(params, defaults)

    # -- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` (a parameter listed twice in a group draws torch's warning and is stepped
        twice, as torch does), then this optimizer's validation of the group."""
        super().add_param_group(param_group)
        self._need_device_dtype_check_for_fused = True
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
        """Also run by torch's ``load_state_dict``: options a saved state lacks get this optimizer's defaults, and a
        ``step`` saved as a plain number (older checkpoints, converted ones) becomes the 0-d tensor torch keeps."""
        super().__setstate__(state)
        self.__dict__.setdefault("skipped_steps", 0)
        self._need_device_dtype_check_for_fused = True
        for group in self.param_groups:
            for key in self.extra_options:
                group.setdefault(key, self.defaults[key])
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            on_device = bool(group.get("capturable"))  # torch's capturable layout: the step on the parameter's device
            for param in group["params"]:
                entry = self.state.get(param)
                if entry and "step" in entry and not torch.is_tensor(entry["step"]):
                    entry["step"] = torch.tensor(float(entry["step"]), dtype=scalar_dtype(),
                                                 device=param.device if on_device else None)

    def _validate_group(self, group: dict[str, Any]) -> None:
        check_choice("impl", group["impl"], IMPLS)
        if group.get("capturable") and not self.supports_capturable:
            raise ValueError(f"capturable=True is not supported by {type(self).__name__} (torch.optim's twin does not "
                             "take it either); the classes that take it: Adam, AdamW, NAdam, RAdam, Adamax, ASGD, "
                             "RMSprop, Rprop, Adadelta")
        check_choice("nonfinite", group["nonfinite"], NONFINITE_POLICIES)
        if group.get("state_dtype") not in STATE_DTYPES:
            raise ValueError(f"state_dtype must be one of None, torch.float32, torch.float64, got "
                             f"{group.get('state_dtype')!r}")
        self._validate(group)

    def _working_copy(self, param: Tensor, group: dict[str, Any]) -> Tensor:
        """``param`` itself, or a copy in the wider ``state_dtype`` that the step updates (then rounded back)."""
        wide = self._wide_dtype(param, group)
        return param if wide is None else param.detach().to(wide)

    def _validate(self, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def plan(self, group: dict[str, Any]) -> StepPlan:
        """This group's step as a :class:`~descentlab.rules.plan.StepPlan` (read by every executor)."""
        raise NotImplementedError

    def _add_missing_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any],
                           missing: list[str]) -> bool:
        """The plan needs state entries that this parameter's state lacks (an option that adds state was
        switched on after the first step). Fill them and return whether this is a first step, or raise."""
        raise RuntimeError(f"{type(self).__name__} state has no {missing[0]!r}: an option that adds it was "
                           "switched on after the first step; build a new optimizer instead")

    # -- the step ------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss. The step runs
        without autograd, or with it when the optimizer was built with ``differentiable=True`` (as torch)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        wanted = bool(self.defaults.get("differentiable", False))
        if torch.is_grad_enabled() is wanted:  # already so (a training loop under no_grad, the live lab): no context
            return self._step(loss)
        with torch.set_grad_enabled(wanted):
            return self._step(loss)

    def _step(self, loss: Any) -> Any:
        if getattr(self, "_need_device_dtype_check_for_fused", True):
            # torch.optim's fused classes refuse, at the step, parameters its fused kernels cannot take
            fused = [group for group in self.param_groups if group.get("fused")]
            check_fused_params(type(self).__name__, self.param_groups)
            # until a fused group has had gradients; without a fused group nothing is left to check (a group added
            # later sets the flag again)
            self._need_device_dtype_check_for_fused = bool(fused) and not any(
                p.grad is not None for g in fused for p in g["params"])
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

    def _compiled_path(self) -> Any:
        """``descentlab.fused.dispatch`` (compiled kernels off the CPU), imported at first use and kept."""
        return _fused_package().dispatch

    def _step_group(self, group: dict[str, Any], grad_inv_scale: float = 0.0) -> None:
        """The group's plan on the fastest path each tensor allows: the C kernels (CPU, ``auto`` / ``fused``), torch's
        fused kernels (``torch_fused``; ``auto`` off the CPU, where the group's convention is exactly torch's), the
        multi-tensor path (``foreach``; ``auto`` off the CPU, and on the CPU for float32/float64 tensors when the
        plan's rule has no C kernel), the compiled kernels (large tensors off the CPU), and the reference loop for
        the rest. While ``torch.compile`` traces the step, every tensor takes the reference
        loop, whose tensor ops (with tensor-valued scalars, see ``rules.common.host_value``) Inductor fuses; so does a
        ``capturable=True`` group, with its scalars kept as tensors on the parameter's device."""
        plan = self.plan(group)
        params = group["params"]
        impl = group["impl"]
        capturable = bool(group.get("capturable"))
        compiling = torch.compiler.is_compiling()
        if capturable and not compiling:
            index = next(i for i, g in enumerate(self.param_groups) if g is group)
            check_capturable(type(self).__name__, index, group, self.state)
        if impl != "reference" and not capturable and not compiling and not group.get("differentiable"):
            fused = _fused_package()
            if impl in ("auto", "fused"):
                params = fused.fused_cpu_step(self, group, plan, grad_inv_scale)  # one C call per dtype
            if impl == "torch_fused" or (impl == "auto" and any(not p.is_cpu for p in params)):
                params = fused.torch_fused_step(self.state, group, plan, params,
                                                lambda p, state: self._init_state(p, group, state),
                                                self._grad_scale_tensor(),  # found_inf: the step was skipped
                                                keep=None if impl == "torch_fused" else lambda p: p.is_cpu)
            if impl == "foreach":
                params = fused.foreach_step(self.state, group, plan, params, grad_inv_scale)
            elif impl == "torch_fused" and params:  # what torch's kernels cannot take: as the default path would
                params = fused.foreach_step(self.state, group, plan, params, grad_inv_scale,
                                            keep=lambda p: p.is_cpu and p.dtype not in _FOREACH_CPU_DTYPES)
            elif impl == "auto" and params and fused.kernel_call(plan) is None:  # no C kernel for this rule
                params = fused.foreach_step(self.state, group, plan, params, grad_inv_scale,
                                            keep=lambda p: (p.is_cpu and p.dtype not in _FOREACH_CPU_DTYPES)
                                            or fused.dispatch.takes(plan, p, self.state, group))
            elif impl == "auto" and any(not p.is_cpu for p in params):
                params = fused.foreach_step(self.state, group, plan, params, grad_inv_scale,
                                            keep=lambda p: p.is_cpu or fused.dispatch.takes(plan, p, self.state, group))
        step_reference(self, plan, group, params, grad_inv_scale)

    def _grad_scale_tensor(self) -> Tensor | None:
        """``GradScaler``'s scale as the tensor torch's fused kernels take (they divide each gradient by it)."""
        scale = getattr(self, "grad_scale", None)
        return None if scale is None else torch.as_tensor(scale, dtype=torch.float32)
