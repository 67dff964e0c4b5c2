"""``differentiable=True``: the step takes part in autograd (meta-learning), as torch's does — same values and
same gradients through the step as torch's differentiable optimizers, and gradcheck passes."""

from __future__ import annotations

import inspect

import pytest
import torch

import descentlab
from descentlab.optim import REGISTRY

TWINS = [(name, spec) for name, spec in REGISTRY.items()
         if spec.torch_equivalent is not None and spec.torch_equivalent[0].__name__ == spec.cls.__name__
         # torch's Adafactor, Muon, SparseAdam and LBFGS have no differentiable mode to compare with
         and "differentiable" in inspect.signature(spec.torch_equivalent[0].__init__).parameters]
CASES = [(name, variant) for name, spec in TWINS for variant, options in spec.variants.items()
         if not set(options) - set(getattr(torch.optim, spec.cls.__name__).__init__.__code__.co_varnames)]


BIAS_CORRECTED = {"adam", "adamw", "nadam", "adamax"}


def _stepped(cls, p, grad, state, options):
    """torch's own differentiable-test function: a fresh optimizer over a clone of ``p`` with the given state."""
    p = p.clone()
    p.grad = grad
    opt = cls([p], differentiable=True, **options)
    opt.state[p].update({k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()})
    opt.step()
    return p, opt.state[p]


def _state(cls, options, p):
    """The state after three ordinary steps of ``cls`` (torch's class, or descentlab's for options torch's has
    not), float64."""
    q = torch.nn.Parameter(p.detach().clone())
    opt = cls([q], **options)
    for i in range(3):
        q.grad = torch.randn(q.shape, dtype=q.dtype, generator=torch.Generator().manual_seed(i))
        opt.step()
    return {k: v.detach().clone().requires_grad_(v.is_floating_point() and v.dim() > 0 and k != "step")
            if torch.is_tensor(v) else v for k, v in opt.state[q].items()}


@pytest.mark.parametrize("name, variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_the_differentiable_step_equals_torch_in_value_and_gradient(name, variant):
    spec = REGISTRY[name]
    options = {**spec.defaults, **spec.variants[variant]}
    p = torch.randn(4, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(4, dtype=torch.float64, requires_grad=True)
    state = _state(getattr(torch.optim, spec.cls.__name__), options, p)
    ours, ours_state = _stepped(spec.cls, p, grad, state, options)
    theirs, _ = _stepped(getattr(torch.optim, spec.cls.__name__), p, grad, state, options)
    # The same value as an ordinary (non-differentiable) step, to the bit: one rule, autograd only records it.
    plain = p.detach().clone().requires_grad_()
    plain.grad = grad.detach().clone()
    ordinary = spec.cls([plain], **options, impl="reference")
    ordinary.state[plain].update({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()})
    ordinary.step()
    assert torch.equal(ours.detach(), plain.detach())
    # torch's differentiable path computes 1 − βᵗ from its float32 step tensor and float32 β (descentlab, and
    # torch's ordinary path: float64), ≈ 1e-5 relative at t = 4 for β₂ = 0.999; the other rows agree to rounding
    tol = dict(rtol=3e-5, atol=1e-8) if name in BIAS_CORRECTED else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, theirs, **tol)
    inputs = [p, grad] + [v for v in state.values() if torch.is_tensor(v) and v.requires_grad]
    weights = torch.randn(4, dtype=torch.float64)
    ours_grads = torch.autograd.grad((ours * weights).sum(), inputs, allow_unused=True)
    theirs_grads = torch.autograd.grad((theirs * weights).sum(), inputs, allow_unused=True)
    for a, b in zip(ours_grads, theirs_grads):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("name", [name for name, _ in TWINS])
def test_gradcheck_through_one_step(name):
    spec = REGISTRY[name]
    p = torch.randn(3, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, dtype=torch.float64, requires_grad=True)
    # state values of order 1 (after real steps Adadelta's acc_delta is ~1e-6, too close to 0 for the finite
    # differences of gradcheck — torch's own Adadelta fails there too)
    state = {k: (torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_() if torch.is_tensor(v) and v.requires_grad
             else v for k, v in _state(getattr(torch.optim, spec.cls.__name__), spec.defaults, p).items()}
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v) and v.requires_grad}

    def fn(p, grad, *values):
        return _stepped(spec.cls, p, grad, {**state, **dict(zip(tensors, values))}, spec.defaults)[0]

    assert torch.autograd.gradcheck(fn, (p, grad, *tensors.values()))


def test_a_differentiable_step_stays_on_the_reference_loop_and_ordinary_steps_keep_no_graph():
    p = torch.nn.Parameter(torch.randn(8))
    opt = descentlab.Adam([p], lr=0.1)
    p.grad = torch.randn(8)
    opt.step()
    opt.step()
    assert not opt.state[p]["exp_avg"].requires_grad and p.grad_fn is None
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        descentlab.Adam([p], fused=True, foreach=True)


#: descentlab's own conventions on the torch-named classes (options torch's class does not have): no torch twin to
#: compare with, so the differentiable step is checked against the ordinary one (the same value, to the bit) and
#: its gradients against finite differences. The rules must be autograd-safe: ``rules.common.maximum_`` for running
#: maxima and ``root_with_eps`` for ``√v + ε`` (an in-place ``sqrt().add_(ε)`` breaks the backward pass of √).
CONVENTIONS = [(name, variant) for name, spec in TWINS for variant, options in spec.variants.items()
               if set(options) - set(getattr(torch.optim, spec.cls.__name__).__init__.__code__.co_varnames)]


@pytest.mark.parametrize("name, variant", CONVENTIONS, ids=[f"{n}-{v}" for n, v in CONVENTIONS])
def test_descentlab_conventions_step_differentiably(name, variant):
    spec = REGISTRY[name]
    options = {**spec.defaults, **spec.variants[variant]}
    p = torch.randn(3, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, dtype=torch.float64, requires_grad=True)
    state = _state(spec.cls, options, p)
    ours, _ = _stepped(spec.cls, p, grad, state, options)
    plain = p.detach().clone().requires_grad_()
    plain.grad = grad.detach().clone()
    ordinary = spec.cls([plain], **options, impl="reference")
    ordinary.state[plain].update({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()})
    ordinary.step()
    assert torch.equal(ours.detach(), plain.detach())
    # gradcheck from state values of order 1, as test_gradcheck_through_one_step (Adadelta's acc_delta is ~1e-6
    # after real steps); a centered RMSprop's mean gradient (< 0.5) keeps E[g²] − E[g]² (> 0.25) positive
    state = {k: (torch.rand(3, dtype=torch.float64) * 0.5 if k == "grad_avg" else
                 torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_()
             if torch.is_tensor(v) and v.requires_grad else v for k, v in state.items()}
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v) and v.requires_grad}

    def fn(p, grad, *values):
        return _stepped(spec.cls, p, grad, {**state, **dict(zip(tensors, values))}, options)[0]

    assert torch.autograd.gradcheck(fn, (p, grad, *tensors.values()))
