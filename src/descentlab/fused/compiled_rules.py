"""Which rules have a compiled (``torch.compile``) kernel, and how a plan's numbers reach it.

Each entry turns a :class:`~descentlab.rules.plan.StepPlan` and the tensor's next step ``t`` into the kernel's
arguments: the step-dependent scalars computed in Python float64 exactly as the rule computes them (with the
rule's own helpers), then handed over as 0-d tensors of the parameter's dtype so that a schedule never
recompiles. Kernels are in :mod:`descentlab.fused.kernels`; the rules in :mod:`descentlab.rules` are the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from descentlab import rules
from descentlab.rules.common import bias_correction
from descentlab.rules.nadam import momentum_coefficient
from descentlab.rules.plan import Rule, StepPlan

Runner = Callable[[Callable[..., None], StepPlan, Tensor, Tensor, dict[str, Any], float], None]


@dataclass(frozen=True)
class CompiledRule:
    """A rule's compiled kernel (:data:`descentlab.fused.compiled.KERNEL_NAMES`), whether it applies decoupled
    weight decay itself, and the function that calls it ``run(fn, plan, param, grad, state, step)``."""

    kernel: str
    decoupled: bool
    run: Runner


def _scalars(param: Tensor, *values: float) -> list[Tensor]:
    return [torch.tensor(x, dtype=param.dtype) for x in values]


def _coupled(plan: StepPlan) -> tuple[float, float]:
    """(decay factor of the weights, λ applied to the gradient) — decoupled: (1 − ηλ, 0); coupled: (1, λ)."""
    lr, wd = float(plan.hp["lr"]), float(plan.weight_decay)
    if plan.decoupled:
        return (1.0 - lr * wd if wd != 0 else 1.0), 0.0
    return 1.0, wd


def _inside(plan: StepPlan) -> bool:
    return plan.hp["eps_placement"] == "inside"


def _rmsprop(fn: Callable[..., None], plan: StepPlan, p: Tensor, grad: Tensor, state: dict[str, Any],
             step: float) -> None:
    hp = plan.hp
    fn(p, grad, state["square_avg"], state.get("grad_avg") if plan.rule is rules.centered_rmsprop else None,
       state.get("momentum_buffer") if hp["momentum"] > 0 else None, *_scalars(p, float(hp["lr"])),
       float(hp["alpha"]), float(hp["eps"]), float(hp["momentum"]), float(plan.weight_decay), bool(plan.maximize),
       _inside(plan))


def _adadelta(fn: Callable[..., None], plan: StepPlan, p: Tensor, grad: Tensor, state: dict[str, Any],
              step: float) -> None:
    hp = plan.hp
    fn(p, grad, state["square_avg"], state["acc_delta"], *_scalars(p, float(hp["lr"])), float(hp["rho"]),
       float(hp["eps"]), float(plan.weight_decay), bool(plan.maximize), _inside(plan))


def _adagrad(fn: Callable[..., None], plan: StepPlan, p: Tensor, grad: Tensor, state: dict[str, Any],
             step: float) -> None:
    hp = plan.hp
    step_lr = float(hp["lr"]) / (1 + (step - 1) * float(hp["lr_decay"]))
    fn(p, grad, state["sum"], *_scalars(p, step_lr), float(hp["eps"]), float(plan.weight_decay),
       bool(plan.maximize), _inside(plan))


def _adam(fn: Callable[..., None], plan: StepPlan, p: Tensor, grad: Tensor, state: dict[str, Any],
          step: float) -> None:
    """Adam's scalars, as ``rules.adam`` computes them (float64, then the tensor's dtype)."""
    hp = plan.hp
    beta1, beta2 = float(hp["beta1"]), float(hp["beta2"])
    c1, c2 = ((bias_correction(beta1, step), bias_correction(beta2, step)) if hp["bias_correction"] else (1.0, 1.0))
    decay, wd = _coupled(plan)
    fn(p, grad, state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"] if plan.rule is rules.amsgrad else None,
       *_scalars(p, decay, float(hp["lr"]) / c1, c2**0.5, c2), beta1, beta2, float(hp["eps"]), wd,
       bool(plan.maximize), _inside(plan))


def _nadam(fn: Callable[..., None], plan: StepPlan, p: Tensor, grad: Tensor, state: dict[str, Any],
           step: float) -> None:
    """NAdam's scalars, as ``rules.nadam.nadam`` computes them (Π in the state's dtype, the rest in float64)."""
    hp = plan.hp
    lr, beta1, beta2, psi = float(hp["lr"]), float(hp["beta1"]), float(hp["beta2"]), float(hp["momentum_decay"])
    mu, mu_next = momentum_coefficient(beta1, psi, step), momentum_coefficient(beta1, psi, step + 1)
    new_product = state["mu_product"] * mu
    product = new_product.item()
    decay, wd = _coupled(plan)
    fn(p, grad, state["exp_avg"], state["exp_avg_sq"],
       *_scalars(p, decay, lr * (1.0 - mu) / (1.0 - product), lr * mu_next / (1.0 - product * mu_next),
                 bias_correction(beta2, step)),
       beta1, beta2, float(hp["eps"]), wd, bool(plan.maximize), _inside(plan))
    state["mu_product"].copy_(new_product)


#: rule → its compiled kernel; a rule missing here runs on the reference path off the CPU.
COMPILED_RULES: dict[Rule, CompiledRule] = {
    rules.rmsprop: CompiledRule("rmsprop", False, _rmsprop),
    rules.centered_rmsprop: CompiledRule("rmsprop", False, _rmsprop),
    rules.adadelta: CompiledRule("adadelta", False, _adadelta),
    rules.adagrad: CompiledRule("adagrad", False, _adagrad),
    rules.adam: CompiledRule("adam", True, _adam),
    rules.amsgrad: CompiledRule("adam", True, _adam),
    rules.nadam: CompiledRule("nadam", True, _nadam),
}
