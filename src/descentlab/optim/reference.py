"""The reference executor: a group's :class:`~descentlab.rules.plan.StepPlan` run tensor by tensor.

This is the oracle every faster path is checked against: plain tensor operations in the order the plan
states them (see :mod:`descentlab.rules.plan`), with the adapter's duties around them — lazy state creation,
state that follows a moved parameter, the wider ``state_dtype`` working copy, complex parameters viewed as
pairs of reals, GradScaler's unscaling and the sparse-gradient refusal (unless the optimizer class sets
``accepts_sparse_gradients = True``: SparseAdam's, SGD's and Adagrad's rules take them; with coupled weight decay
they are refused, as torch refuses them).

A ``capturable=True`` group runs here with tensor-valued step scalars (``rules.common.tensor_scalars``): its
``step`` and other 0-d state (NAdam's ``mu_product``, ASGD's ``eta`` / ``mu``) live on the parameter's device, as
torch keeps them, and nothing is read back to the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import Tensor

from descentlab.rules.common import decay_weights, host_value, prepare_gradient, tensor_scalars
from descentlab.rules.plan import StepPlan, rule_accepts

if TYPE_CHECKING:
    from descentlab.optim.base import RuleOptimizer


def _real_view(t: Any) -> Any:
    return torch.view_as_real(t) if isinstance(t, Tensor) and t.is_complex() else t


def run_rule(plan: StepPlan, param: Tensor, grad: Tensor, state: dict[str, Any], first_step: bool) -> None:
    """One tensor's step as ``plan`` states it: gradient preparation, step counter, decoupled decay, rule."""
    grad = prepare_gradient(param, grad, weight_decay=0 if plan.decoupled else plan.weight_decay,
                            maximize=plan.maximize)
    kwargs = dict(plan.hp)
    if plan.counts_steps:
        state["step"] += 1
        if "step" not in kwargs and rule_accepts(plan.rule, "step"):
            kwargs["step"] = host_value(state["step"])
    if plan.decoupled:
        decay_weights(param, lr=plan.hp["lr"], weight_decay=plan.weight_decay)
    if "first_step" not in kwargs and rule_accepts(plan.rule, "first_step"):
        kwargs["first_step"] = first_step
    plan.rule(param, grad, *(_traceable(state[key]) if key in plan.extra else state[key] for key in plan.state),
              **kwargs)


def _traceable(scalar: Tensor) -> Tensor:
    """A 0-d state tensor the rule updates in place (NAdam's ``Π``). While ``torch.compile`` traces the step it is
    passed as an alias through a 1-element view: Inductor (torch 2.13) drops in-place updates of a float64 0-d
    CPU graph input — ``prod.mul_(μ)`` left ``Π`` at its first value, NAdam with a float64 ``Π`` 0.16 off after 4
    compiled steps — and writes them through a view."""
    if torch.compiler.is_compiling() and scalar.dim() == 0:
        return scalar.view(1).view(())
    return scalar


def step_reference(optimizer: RuleOptimizer, plan: StepPlan, group: dict[str, Any], params: Iterable[Tensor],
                   grad_inv_scale: float = 0.0) -> None:
    """Step ``params`` (of ``group``) one by one with the reference rule. ``grad_inv_scale`` ≠ 0: each gradient
    is first unscaled in place (``g ← g · 1/s``, as ``GradScaler.unscale_``)."""
    if group.get("capturable"):
        with tensor_scalars():
            _step_each(optimizer, plan, group, params, grad_inv_scale, True)
    elif params:  # the fast paths usually leave nothing: no generator context, no loop to enter (a tiny model's
        _step_each(optimizer, plan, group, params, grad_inv_scale, False)  # step is counted in microseconds)


def _on_device(state: dict[str, Any], device: torch.device) -> None:
    """A capturable group's 0-d state (``step``, ``mu_product``, ``eta``, …) moved to the parameter's device."""
    for key, value in state.items():
        if isinstance(value, Tensor) and value.dim() == 0 and value.device != device:
            state[key] = value.to(device)


def _step_each(optimizer: RuleOptimizer, plan: StepPlan, group: dict[str, Any], params: Iterable[Tensor],
               grad_inv_scale: float, capturable: bool) -> None:
    name = type(optimizer).__name__
    for param in params:
        grad = param.grad
        if grad is None:
            continue
        if grad.is_sparse:
            if not optimizer.accepts_sparse_gradients:
                raise RuntimeError(f"{name} does not support sparse gradients; "
                                   "use torch.optim.SparseAdam or torch.optim.Adagrad for sparse embeddings")
            if plan.weight_decay != 0 and not plan.decoupled:
                raise RuntimeError(f"{name}: weight_decay option is not compatible with sparse gradients (g + λw "
                                   "would be dense; torch.optim refuses it too)")
        if grad_inv_scale:
            grad.mul_(torch.tensor(grad_inv_scale, dtype=torch.float32, device=grad.device))  # as unscale_
        state = optimizer.state.get(param) if not plan.stateful else optimizer.state[param]
        if state is None:
            state = {}  # a stateless step (SGD without momentum) leaves no empty entry behind, as torch
        first_step = len(state) == 0
        work = optimizer._working_copy(param, group)
        if work is not param:
            grad = grad.to(work.dtype)
        if first_step:
            optimizer._init_state(work, group, state)
            if capturable:
                _on_device(state, work.device)
        else:
            optimizer._follow_param(work, state)
        missing = [key for key in plan.state if key not in state or state[key] is None]
        if missing:
            first_step = optimizer._add_missing_state(work, group, state, missing)
        if (not first_step and work is param and group["impl"] in ("auto", "fused")
                and not torch.compiler.is_compiling()):
            dispatch = optimizer._compiled_path()
            if dispatch is not None and dispatch.try_fused_update(plan, param, grad, state, group):
                continue
        if work.is_complex() and optimizer.complex_as_real:
            real_state = {key: _real_view(value) for key, value in state.items()}
            run_rule(plan, torch.view_as_real(work), torch.view_as_real(grad), real_state, first_step)
        else:
            run_rule(plan, work, grad, state, first_step)
        if work is not param:
            param.copy_(work)  # round the wide result into the parameter's dtype
