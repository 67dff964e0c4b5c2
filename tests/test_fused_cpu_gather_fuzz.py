"""Fuzzing the fused path: random param groups — dtypes, shapes, contiguity, shared and overlapping memory, odd or
missing gradients, mixed-precision state, GradScaler's unscaling — stepped by a random registry rule.

The native gatherer and the Python loop must end the same way (the same error, or none) with bit-identical
parameters and state: they make the same decisions by construction, so any difference is a bug in one of them.
The fused path must end as the reference rule does: the same error, or none and parameters within
torch.testing's tolerance for their dtype."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import descentlab
from descentlab.fused import cpu_build, cpu_step
from descentlab.optim.registry import REGISTRY, get_spec

#: The rows these random groups (any shapes, dense gradients, step() without a closure) can step: every row
#: without a requirement (registry.REQUIREMENTS; Muon, SparseAdam and LBFGS have no C kernel anyway).
ORDINARY_ROWS = [name for name in descentlab.optimizer_names() if not REGISTRY[name].requires]

pytestmark = [
    pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler"),
    pytest.mark.skipif(not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")),
                       reason="no C++ compiler: the native gatherer cannot be built here"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
LAYOUTS = ["contiguous", "transposed", "view_of_shared", "tied_to_previous"]
GRADS = ["normal", "none", "non_contiguous", "zero_tensor", "negated", "the_param"]

param_spec = st.tuples(st.sampled_from(DTYPES), st.sampled_from([(), (1,), (7,), (3, 5), (40_000,)]),
                       st.sampled_from(LAYOUTS), st.sampled_from(GRADS))


def _build(specs, seed):
    gen = torch.Generator().manual_seed(seed)
    shared = torch.randn(100_000, generator=gen)
    params, grad_kinds = [], []
    offset = 0
    for dtype, shape, layout, grad_kind in specs:
        numel = 1
        for size in shape:
            numel *= size
        if layout == "transposed" and len(shape) == 2:
            data = torch.randn(shape[::-1], generator=gen).to(dtype).t()
        elif layout == "view_of_shared" and dtype == torch.float32:
            data = shared[offset:offset + numel].view(shape)  # consecutive views overlap by half
            offset += max(1, numel // 2)
        elif layout == "tied_to_previous" and params and params[-1].shape == shape and params[-1].dtype == dtype:
            data = params[-1].data
        else:
            data = torch.randn(shape, generator=gen).to(dtype)
        params.append(torch.nn.Parameter(data))
        grad_kinds.append(grad_kind)
    return params, grad_kinds


SCALE = 16.0  # a GradScaler's scale when the run is scaled: gradients are multiplied by it, the step unscales


def _give_grads(params, grad_kinds, step, scaled=False):
    gen = torch.Generator().manual_seed(1000 + step)
    for p, kind in zip(params, grad_kinds):
        g = (torch.randn(p.shape, generator=gen) * (SCALE if scaled else 1.0)).to(p.dtype)
        if kind == "none":
            p.grad = None
        elif kind == "non_contiguous" and p.dim() == 2:
            p.grad = torch.randn(p.shape[::-1], generator=gen).to(p.dtype).t()
        elif kind == "zero_tensor":
            p.grad = torch._efficientzerotensor(p.shape, dtype=p.dtype)
        elif kind == "negated":
            p.grad = torch._neg_view(g)
        elif kind == "the_param":
            p.grad = p.detach()
        else:
            p.grad = g


def _scale(opt, scaled):
    """What torch.amp.GradScaler hands a step that supports AMP scaling (``_step_supports_amp_scaling``)."""
    if scaled:
        opt.grad_scale, opt.found_inf = torch.tensor(SCALE), torch.tensor(0.0)


def _run(specs, rule, state_dtype, seed, scaled=False, impl="fused", gather="native"):
    """Three steps of a random group; the outcome of each step, the final parameters and state, and how many
    tensors the kernels stepped in the last one."""
    before = cpu_step.GATHER
    cpu_step.GATHER = gather
    try:
        params, grad_kinds = _build(specs, seed)
        opt = get_spec(rule).build(params, impl=impl, state_dtype=state_dtype)
        _scale(opt, scaled)
        outcomes = []
        for step in range(3):
            _give_grads(params, grad_kinds, step, scaled)
            try:
                opt.step()
                outcomes.append("ok")
            except Exception as err:  # noqa: BLE001 - compared between the runs, whatever it is
                outcomes.append(f"{type(err).__name__}: {err}")
        state = [{k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[p].items()} for p in params]
        return outcomes, [p.detach().clone() for p in params], state, cpu_step.fused_tensor_count(opt)
    finally:
        cpu_step.GATHER = before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(param_spec, min_size=1, max_size=6), rule=st.sampled_from(ORDINARY_ROWS),
       state_dtype=st.sampled_from([None, torch.float32]), seed=st.integers(0, 2**16), scaled=st.booleans())
def test_both_gatherers_end_every_random_group_identically(specs, rule, state_dtype, seed, scaled):
    assert cpu_build.gather_module(wait=True) is not None, cpu_build.gather_unavailable_reason()
    py = _run(specs, rule, state_dtype, seed, scaled, gather="python")
    native = _run(specs, rule, state_dtype, seed, scaled, gather="native")
    assert native[0] == py[0]
    assert native[3] == py[3], "the gatherers stepped different numbers of tensors"
    for a, b in zip(native[1], py[1]):
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
    for sa, sb in zip(native[2], py[2]):
        assert sa.keys() == sb.keys()
        for key in sa:
            x, y = torch.as_tensor(sa[key]), torch.as_tensor(sb[key])
            assert torch.equal(x, y) or torch.equal(x.nan_to_num(), y.nan_to_num()), key


# torch.testing's defaults per dtype (torch's own fused-vs-for-loop optimizer tests use them)
TOL = {torch.float32: dict(rtol=1.3e-6, atol=1e-5), torch.float64: dict(rtol=1e-7, atol=1e-7),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5), torch.float16: dict(rtol=1e-3, atol=1e-5)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(param_spec, min_size=1, max_size=6), rule=st.sampled_from(ORDINARY_ROWS),
       state_dtype=st.sampled_from([None, torch.float32]), seed=st.integers(0, 2**16), scaled=st.booleans())
# found by this test: a parameter left to the reference rule (its gradient is itself) tied to a batched one; the
# kernel stepped the batched one first, the reference rule steps them in group order
@example(specs=[(torch.float32, (), "contiguous", "the_param"), (torch.float32, (), "tied_to_previous", "normal")],
         rule="sgd", state_dtype=None, seed=0, scaled=False)
def test_the_fused_path_ends_every_random_group_as_the_reference_rule(specs, rule, state_dtype, seed, scaled):
    assert cpu_build.gather_module(wait=True) is not None, cpu_build.gather_unavailable_reason()
    fused = _run(specs, rule, state_dtype, seed, scaled, impl="fused")
    reference = _run(specs, rule, state_dtype, seed, scaled, impl="reference")
    assert fused[0] == reference[0]
    if any(outcome != "ok" for outcome in fused[0]):
        return  # a step that raised left both paths part-stepped, not on the same tensors (docs/speed.md)
    for i, (a, b) in enumerate(zip(fused[1], reference[1])):
        torch.testing.assert_close(a, b, **TOL[b.dtype], equal_nan=True, msg=lambda m: f"param {i}: {m}")
