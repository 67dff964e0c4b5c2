"""The multi-tensor executor (``impl="foreach"``, and ``impl="auto"`` off the CPU): a group's plan run once per
(device, dtype) bucket over all its tensors, by the rule's own code on :class:`~descentlab.fused.tensor_list.TensorList`.

What a plan means is stated once in :mod:`descentlab.rules.plan`; this module does the same steps as the
reference loop (:func:`descentlab.optim.reference.run_rule`) — gradient preparation, the step counters, decoupled
decay, the rule — each as one ``torch._foreach_*`` call for the bucket; a rule's non-element-wise parts (Muon's
Newton–Schulz iteration, Adafactor's reductions over one dimension and its rank-1 product) run per tensor inside
the list (``TensorList.each``), and norms read as numbers are one ``_foreach_norm`` and one read for the list.
It steps only tensors whose state exists and matches them (same device, dtype and shape; a plain dense gradient of the parameter's dtype, no wider
``state_dtype``, not complex, no tensor subclass); the rest — first steps, odd layouts, tensors the compiled
kernels take — go back to the caller for the reference loop, in group order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch
from torch import Tensor

from descentlab.fused.tensor_list import TensorList
from descentlab.rules.adafactor import adafactor_factored
from descentlab.rules.common import decay_weights, host_value, prepare_gradient
from descentlab.rules.plan import Rule, StepPlan, rule_accepts
from descentlab.rules.sparse_adam import sparse_adam

_PLAIN = (Tensor, torch.nn.Parameter)

#: Rules this path never takes — their tensors always go to the reference loop: SparseAdam's (its gradients are
#: sparse, and its refusal of a dense one is the reference rule's).
REFERENCE_ONLY_RULES: frozenset[Rule] = frozenset({sparse_adam})
#: Rules whose state tensors are not shaped like the parameter (Adafactor's row and column factors): their state
#: must match the parameter's device, dtype and number of dimensions, and the rule checks the rest.
FACTORED_STATE_RULES: frozenset[Rule] = frozenset({adafactor_factored})


def _has_python_dispatch(t: Tensor) -> bool:
    return bool(torch._C._dispatch_keys(t).has(torch._C.DispatchKey.Python))


def _fits(t: Any, param: Tensor, same_shape: bool = True) -> bool:
    return (type(t) is Tensor and t.layout is torch.strided and t.dtype == param.dtype and t.device == param.device
            and (t.shape == param.shape if same_shape else t.dim() == param.dim()))


def _eligible(plan: StepPlan, param: Tensor, state: dict[str, Any] | None, group: dict[str, Any]) -> bool:
    grad = param.grad
    if plan.rule in REFERENCE_ONLY_RULES:
        return False
    if type(param) not in _PLAIN or param.layout is not torch.strided or _has_python_dispatch(param):
        return False  # a tensor subclass or a __torch_dispatch__ wrapper: the reference loop
    if param.is_complex() or not param.is_floating_point() or not _fits(grad, param):
        return False
    wide = group.get("state_dtype")
    if wide is not None and wide.itemsize > param.dtype.itemsize:
        return False  # the reference loop keeps the wider working copy
    if plan.stateful and not state:
        return False  # a first step: the reference loop creates the state
    if state is not None:
        shaped = plan.rule not in FACTORED_STATE_RULES
        if any(not _fits(state.get(key), param, shaped) for key in plan.state if key not in plan.extra):
            return False
        scalars = plan.extra + (("step",) if plan.counts_steps else ())
        if any(not (type(state.get(key)) is Tensor and state[key].dim() == 0) for key in scalars):
            return False
    return True


def foreach_step(state_of: Any, group: dict[str, Any], plan: StepPlan, params: list[Tensor],
                 grad_inv_scale: float = 0.0, *, keep: Callable[[Tensor], bool] | None = None) -> list[Tensor]:
    """Step the eligible tensors of ``params`` (of ``group``, whose step is ``plan``; state in ``state_of``) bucket
    by bucket; return the others in order. ``keep(param)`` True leaves a tensor to the caller. ``grad_inv_scale``
    ≠ 0: gradients are first unscaled in place, as GradScaler would."""
    buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    rest: list[Tensor] = []
    listed = Counter(id(p) for p in params)
    for param in params:
        if param.grad is None:
            continue
        state = state_of.get(param) if plan.stateful else None
        # a parameter listed twice is stepped twice one after the other, as torch does: the reference loop's
        if (keep is not None and keep(param)) or listed[id(param)] > 1 or not _eligible(plan, param, state, group):
            rest.append(param)
            continue
        buckets.setdefault((param.device, param.dtype), []).append(param)
    for bucket in buckets.values():
        _step_bucket(state_of, plan, bucket, grad_inv_scale)
    return rest


def _step_bucket(state_of: Any, plan: StepPlan, params: list[Tensor], grad_inv_scale: float) -> None:
    grads: list[Tensor] = [p.grad for p in params if p.grad is not None]  # all of them: checked by the caller
    if grad_inv_scale:  # as unscale_: a float32 scale on the gradients' device
        torch._foreach_mul_(grads, torch.tensor(grad_inv_scale, dtype=torch.float32, device=params[0].device))
    states = [state_of[p] for p in params] if plan.stateful else []
    weights: Any = TensorList(params)  # the rules are typed for one tensor; a TensorList stands in for it
    gradients: Any = TensorList(grads)
    grad = prepare_gradient(weights, gradients, weight_decay=0 if plan.decoupled else plan.weight_decay,
                            maximize=plan.maximize)
    kwargs = dict(plan.hp)
    if plan.counts_steps:
        counters = [s["step"] for s in states]
        torch._foreach_add_(counters, 1)
        if "step" not in kwargs and rule_accepts(plan.rule, "step"):
            kwargs["step"] = host_value(TensorList(counters))
    if plan.decoupled:
        decay_weights(weights, lr=plan.hp["lr"], weight_decay=plan.weight_decay)
    if "first_step" not in kwargs and rule_accepts(plan.rule, "first_step"):
        kwargs["first_step"] = False  # every tensor here has its state already
    plan.rule(weights, grad, *(TensorList([s[key] for s in states]) for key in plan.state), **kwargs)
