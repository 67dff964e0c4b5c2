"""The multi-tensor path (``impl="foreach"``): the rules' own code over lists of tensors — equal to the reference
loop bit for bit for every registry row and variant, and no more dispatched operations than torch's foreach mode."""

from __future__ import annotations

import pytest
import torch

import descentlab
from descentlab.fused.tensor_list import ScalarList, TensorList
from descentlab.optim import REGISTRY
from helpers import dispatched_per_step
from optimizer_cases import skip_unmet

VARIANTS = [(name, variant) for name, spec in REGISTRY.items() for variant in spec.variants]
SHAPES = [(5, 3), (3,), (), (7,), (0,)]
MATRIX_SHAPES = [(5, 3), (3, 4), (4, 4), (2, 6), (0, 3)]  # for the matrices-only rows (Muon)


def _pair(name, variant, dtype, steps=10, skip_every=3, impl_b="foreach", **extra):
    """Two copies of one model, stepped by the reference loop and the foreach path; one tensor misses its
    gradient every ``skip_every`` steps (so step counters differ within a bucket)."""
    skip_unmet(name, ("matrices",))  # sparse gradients and closures never take this path: nothing to compare
    spec, opts = REGISTRY[name], {**REGISTRY[name].variants[variant], **extra}
    shapes = MATRIX_SHAPES if "matrices" in spec.requires else SHAPES
    init = [torch.randn(s, generator=torch.Generator().manual_seed(i), dtype=dtype) for i, s in enumerate(shapes)]
    a = [torch.nn.Parameter(t.clone()) for t in init]
    b = [torch.nn.Parameter(t.clone()) for t in init]
    ref, fe = spec.build(a, impl="reference", **opts), spec.build(b, impl=impl_b, **opts)
    g = torch.Generator().manual_seed(99)
    for step in range(steps):
        for i, (pa, pb) in enumerate(zip(a, b)):
            if step % skip_every == skip_every - 1 and i == 1:
                pa.grad = pb.grad = None
                continue
            grad = (torch.randn(pa.shape, generator=g, dtype=torch.float64) + 0.2 * pa.detach().double()).to(dtype)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        ref.step()
        fe.step()
    return a, b, ref, fe


@pytest.mark.parametrize("name, variant", VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["f32", "f64", "bf16"])
def test_foreach_equals_the_reference(name, variant, dtype):
    """float32 / float64: bit for bit. bf16 (with bf16 state): torch's foreach kernels keep intermediate results
    such as ``β·a + (1 − β)·g²`` in float32 before rounding, where the single-tensor bf16 kernels round after each
    op, so the two differ by a few bf16 ulps after 10 steps — of the tensor's largest entry where a momentum
    buffer cancels towards 0; held to 4 such ulps (2⁻⁵ relative to the largest entry). Mixed precision
    (``state_dtype=torch.float32``) takes the reference loop and is exact."""
    a, b, ref, fe = _pair(name, variant, dtype)

    def same(x, y, what):
        if dtype == torch.bfloat16:
            scale = float(x.abs().max()) if x.numel() else 0.0
            torch.testing.assert_close(x, y, rtol=2**-5, atol=2**-5 * scale + 1e-5,
                                       msg=lambda m: f"{name}/{variant} {what}: {m}")
        else:
            assert torch.equal(x, y), f"{name}/{variant} {what}: max diff {(x - y).abs().max()}"

    for i, (pa, pb) in enumerate(zip(a, b)):
        same(pa.detach(), pb.detach(), f"tensor {i}")
        assert set(ref.state[pa]) == set(fe.state[pb])
        for key, value in ref.state[pa].items():
            same(torch.as_tensor(value), torch.as_tensor(fe.state[pb][key]), f"tensor {i} state {key!r}")


def test_foreach_with_grad_scaler_unscaling_and_wide_state_falls_back_exactly():
    """GradScaler's unscaling happens in the foreach pass; bf16 parameters with float32 state take the
    reference loop (its float32 working copy); both end as the reference does."""
    for extra in ({}, {"state_dtype": torch.float32}):
        dtype = torch.bfloat16 if extra else torch.float32
        a, b, ref, fe = _pair("adam", "plain", dtype, **extra)
        assert all(torch.equal(pa, pb) for pa, pb in zip(a, b))
    ps = [torch.nn.Parameter(torch.ones(4)) for _ in range(3)]
    qs = [torch.nn.Parameter(torch.ones(4)) for _ in range(3)]
    ref, fe = descentlab.Adam(ps, lr=0.1, impl="reference"), descentlab.Adam(qs, lr=0.1, impl="foreach")
    for opt, params in ((ref, ps), (fe, qs)):
        for step in range(3):
            for p in params:
                p.grad = torch.full((4,), 512.0 * (step + 1))
            opt.grad_scale = torch.tensor(1024.0)
            opt.step()
    assert all(torch.equal(p, q) and torch.equal(p.grad, q.grad) for p, q in zip(ps, qs))
    assert float(qs[0].grad[0]) == 1.5  # unscaled in place, as GradScaler.unscale_ leaves it


def _ops_per_step(make, tensors):
    return dispatched_per_step(make, tensors, size=50)


TWINS = [name for name, spec in REGISTRY.items() if spec.torch_equivalent is not None]
#: Rows whose dispatch count is not compared with torch's foreach mode, and why.
NO_DISPATCH_COMPARISON = {
    "muon": "torch.optim.Muon has no foreach mode (it raises 'Foreach is not supported for Muon yet'), and Muon steps "
            "2-D parameters only",
    "sparseadam": "torch.optim.SparseAdam has no foreach mode; its gradients are sparse (the reference loop's)",
    "lbfgs": "torch.optim.LBFGS has no foreach mode; it is stepped through a closure over one flat vector",
}


@pytest.mark.parametrize("name", TWINS)
@pytest.mark.parametrize("tensors", [1, 100, 2000])
def test_foreach_dispatches_no_more_operations_than_torch_foreach(name, tensors):
    if name in NO_DISPATCH_COMPARISON:
        pytest.skip(NO_DISPATCH_COMPARISON[name])
    spec = REGISTRY[name]
    torch_cls, renames = spec.torch_equivalent
    variants = spec.variants.get("momentum", {}) if name == "sgd" else {}
    ours = _ops_per_step(lambda ps: spec.build(ps, impl="foreach", **variants), tensors)
    theirs_options = {renames.get(k, k): v for k, v in {**spec.defaults, **variants}.items() if isinstance(renames.get(k, k), str)}
    theirs_options.update({k: v for k, v in renames.items() if not isinstance(v, str)})
    theirs = _ops_per_step(lambda ps: torch_cls(ps, foreach=True, **theirs_options), tensors)
    reference = _ops_per_step(lambda ps: spec.build(ps, impl="reference", **variants), tensors)
    assert ours <= theirs, f"{name}: {ours} dispatched operations a step, torch's foreach {theirs}"
    if tensors >= 100:
        assert ours * 10 < reference  # independent of the tensor count, where the loop grows with it


def test_scalar_lists_collapse_to_one_number_when_the_tensors_agree():
    steps = ScalarList([3.0, 3.0])
    assert (1.0 - 0.9**steps).common() == 1.0 - 0.9**3.0
    assert ScalarList([1.0, 2.0]).common() is None
    with pytest.raises(TypeError, match="does not lift 'sin'"):
        torch.sin(TensorList([torch.zeros(2)]))


def test_lifts_of_sign_rules_and_per_tensor_branches():
    """The lifts Rprop, RAdam and ASGD use: one ``_foreach_*`` call each, equal to the single-tensor op; per-tensor
    comparisons and ``take`` split a list by a branch (RAdam's ρ_t > 5 where the step counters differ)."""
    xs = [torch.tensor([-2.0, 0.0, float("nan"), 3.0]), torch.tensor([0.5])]
    lifted = TensorList(xs)
    for op in ("sign", "neg", "abs", "reciprocal"):
        for a, x in zip(getattr(lifted, op)().tensors, xs):
            torch.testing.assert_close(a, getattr(x, op)(), rtol=0, atol=0, equal_nan=True)
    low = TensorList([torch.full_like(x, -1.0) for x in xs])
    clamped = TensorList([x.clone() for x in xs]).clamp_(-1.0, 1.0).clamp_min_(low).clamp_max_(low.abs())
    for a, x in zip(clamped.tensors, xs):
        torch.testing.assert_close(a, x.clamp(-1.0, 1.0), rtol=0, atol=0, equal_nan=True)
    counters = TensorList([torch.zeros((), dtype=torch.float32) for _ in range(3)]).fill_(ScalarList([0.1, 2.0, 3.0]))
    assert [float(c) for c in counters.tensors] == [float(torch.tensor(0.1)), 2.0, 3.0]
    flags = ScalarList([1.0, 6.0, 7.0]) > 5.0
    assert flags.values == [False, True, True] and (ScalarList([1.0, 2.0]) != 1).values == [False, True]
    assert lifted.take([1]).tensors[0] is xs[1] and ScalarList([4, 5]).take([1]).values == [5]


def test_the_default_path_steps_rules_without_a_c_kernel_on_the_multi_tensor_path():
    """``impl="auto"`` on the CPU: a rule with no C kernel (ASGD, Lion) takes the foreach path for float32/float64
    tensors — a handful of operations instead of the reference loop's several per tensor, same bits."""
    for name in ("asgd", "lion"):
        spec = REGISTRY[name]
        auto = dispatched_per_step(lambda ps: spec.build(ps), 100, size=50)
        reference = dispatched_per_step(lambda ps: spec.build(ps, impl="reference"), 100, size=50)
        assert auto * 10 < reference, (name, auto, reference)
        a, b, ref, fe = _pair(name, "plain", torch.float32, impl_b="auto")
        assert all(torch.equal(pa, pb) for pa, pb in zip(a, b))


@pytest.mark.parametrize("tensors", [1, 100])
def test_adafactor_on_matrices_dispatches_no_more_operations_than_torch_foreach(tensors):
    """The factored path: the row and column reductions, the rank-1 product and the row factor's mean run per
    matrix (no ``_foreach_*`` op has them), everything else — norms read as numbers included — once per list."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    def per_step(make):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(10, 5)) for _ in range(tensors)]
        opt = make(params)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(10, 5)
            with Count() as counter:
                opt.step()
        return counter.count

    ours = per_step(lambda ps: descentlab.Adafactor(ps, impl="foreach"))
    theirs = per_step(lambda ps: torch.optim.Adafactor(ps, foreach=True))
    assert ours <= theirs, (ours, theirs)
    if tensors >= 100:
        assert ours <= 5 * tensors + 30, ours  # 4 per-matrix ops and a fixed number of list ops


@pytest.mark.parametrize("name", ["adafactor", "asgd", "adam"])
def test_a_parameter_listed_twice_is_stepped_twice_in_turn_as_on_the_reference_loop(name):
    """torch steps a repeated parameter twice, one full step after the other; the list path would read both
    copies' norms and counters before either moves, so a repeated parameter takes the reference loop."""
    import warnings

    spec = REGISTRY[name]
    runs = []
    for impl in ("reference", "foreach"):
        p, q = torch.nn.Parameter(torch.linspace(-1, 1, 6)), torch.nn.Parameter(torch.ones(3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's "duplicate parameters" warning
            opt = spec.build([p, q, p], impl=impl)
        for step in range(4):
            p.grad, q.grad = torch.full((6,), 0.3 + step), torch.full((3,), -0.2)
            opt.step()
        runs.append((p.detach().clone(), q.detach().clone()))
    (pa, qa), (pb, qb) = runs
    assert torch.equal(pa, pb) and torch.equal(qa, qb), (name, pa, pb)
