"""Delegation to torch's own fused kernels (``descentlab.fused.torch_fused``), tested on the CPU through
``impl="torch_fused"``, which forces it on every device: a torch convention equals ``torch.optim.X(fused=True)`` bit
for bit and the reference loop within the fused tolerance; any other convention is never delegated."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import descentlab
from descentlab.fused.torch_fused import torch_fused_kind
from descentlab.optim import REGISTRY
from helpers import TORCH_FUSED_TOL, torch_twin

#: The registry variants whose convention is exactly torch's (read from their plans); every other variant of every
#: row must not be delegated. Written out so that a change of the eligibility rule shows here.
ELIGIBLE = {
    ("sgd", "plain"): "sgd", ("sgd", "momentum"): "sgd", ("sgd", "dampening"): "sgd", ("sgd", "nesterov"): "sgd",
    ("sgd", "weight_decay"): "sgd", ("sgd", "maximize"): "sgd",
    ("adagrad", "plain"): "adagrad", ("adagrad", "lr_decay"): "adagrad", ("adagrad", "initial"): "adagrad",
    ("adagrad", "weight_decay"): "adagrad", ("adagrad", "maximize"): "adagrad",
    ("adam", "plain"): "adam", ("adam", "amsgrad"): "adam", ("adam", "weight_decay"): "adam",
    ("adam", "decoupled"): "adamw", ("adam", "maximize"): "adam",
    ("adamw", "plain"): "adamw", ("adamw", "amsgrad"): "adamw", ("adamw", "no_decay"): "adamw",
}
VARIANTS = [(name, variant) for name, spec in REGISTRY.items() if not spec.requires for variant in spec.variants]
SHAPES = [(5, 3), (3,), (), (7,), (0,)]
FUSED_OPS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_")


class FusedOps(TorchDispatchMode):
    """Counts the calls of torch's fused optimizer kernels, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in FUSED_OPS:
            self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _init(dtype, seed=0):
    return [torch.randn(s, generator=torch.Generator().manual_seed(seed + i), dtype=dtype) for i, s in enumerate(SHAPES)]


def _run(opts, params_sets, steps=6, spy=None, skip=True):
    """Step each (params, optimizer) pair with the same gradients; one tensor misses its gradient every third step."""
    g = torch.Generator().manual_seed(99)
    for step in range(steps):
        grads = [(torch.randn(p.shape, generator=g, dtype=torch.float64) + 0.2 * p.detach().double()).to(p.dtype)
                 for p in params_sets[0][0]]
        for params, opt in params_sets:
            for i, (p, grad) in enumerate(zip(params, grads)):
                p.grad = None if skip and step % 3 == 2 and i == 1 else grad.clone()
            if spy is not None and opt is params_sets[0][1]:
                with spy:
                    opt.step()
            else:
                opt.step()


def _plan_kind(name, variant):
    spec = REGISTRY[name]
    opt = spec.build([torch.nn.Parameter(torch.zeros(2))], **spec.variants[variant])
    return torch_fused_kind(opt.plan(opt.param_groups[0]))


def test_the_eligible_variants_are_exactly_torchs_conventions():
    found = {key: kind for key in VARIANTS if (kind := _plan_kind(*key)) is not None}
    assert found == ELIGIBLE


@pytest.mark.parametrize("name, variant", sorted(ELIGIBLE), ids=[f"{n}-{v}" for n, v in sorted(ELIGIBLE)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["f32", "f64", "bf16"])
def test_torch_fused_equals_torch_fused_true_bit_for_bit(name, variant, dtype):
    spec, opts = REGISTRY[name], REGISTRY[name].variants[variant]
    init = _init(dtype)
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    opt = spec.build(ours, impl="torch_fused", **opts)
    twin = torch_twin(name, theirs, fused=True, **opts)
    spy = FusedOps()
    _run(opts, [(ours, opt), (theirs, twin)], spy=spy)
    assert spy.calls == {f"_fused_{ELIGIBLE[name, variant]}_": 6}, spy.calls  # one call a step, every tensor in it
    for i, (p, q) in enumerate(zip(ours, theirs)):
        assert torch.equal(p, q), f"param {i}: max diff {(p - q).abs().max()}"
        assert set(opt.state[p]) == set(twin.state[q]), (i, sorted(opt.state[p]), sorted(twin.state[q]))
        for key, value in twin.state[q].items():
            if key == "momentum_buffer" and dtype == torch.bfloat16:
                continue  # torch 2.13's CPU bf16 _fused_sgd_ leaves garbage in its own first-step buffer (the
                # parameters are right); ours is checked against the reference loop below
            mine = opt.state[p][key]
            assert torch.equal(mine.to(value.dtype), value), f"param {i}, {key}: {mine} vs {value}"


@pytest.mark.parametrize("name, variant", sorted(ELIGIBLE), ids=[f"{n}-{v}" for n, v in sorted(ELIGIBLE)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_torch_fused_equals_the_reference_loop(name, variant, dtype):
    spec, opts = REGISTRY[name], REGISTRY[name].variants[variant]
    init = _init(dtype)
    a, b = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    fused, ref = spec.build(a, impl="torch_fused", **opts), spec.build(b, impl="reference", **opts)
    _run(opts, [(a, fused), (b, ref)], steps=12)
    for i, (p, q) in enumerate(zip(a, b)):
        torch.testing.assert_close(p, q, **TORCH_FUSED_TOL[dtype], msg=lambda m: f"param {i}: {m}")
        for key, value in ref.state[q].items():
            torch.testing.assert_close(torch.as_tensor(fused.state[p][key]).to(value.dtype), value,
                                       **TORCH_FUSED_TOL[dtype], msg=lambda m: f"param {i}, {key}: {m}")


def test_sgd_momentum_bf16_buffer_equals_the_reference_after_the_first_step():
    """The first step copies the gradient into the new buffer (``is_first_step``): exactly the reference's copy."""
    init = _init(torch.bfloat16)
    a, b = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    opts = dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)
    fused, ref = descentlab.SGD(a, impl="torch_fused", **opts), descentlab.SGD(b, impl="reference", **opts)
    _run(opts, [(a, fused), (b, ref)], steps=1)
    for p, q in zip(a, b):  # (the parameters differ in bf16: the kernel rounds w − η·a once, from float32)
        assert torch.equal(fused.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"])


INELIGIBLE = [key for key in VARIANTS if key not in ELIGIBLE]


@pytest.mark.parametrize("name, variant", INELIGIBLE, ids=[f"{n}-{v}" for n, v in INELIGIBLE])
def test_other_conventions_are_not_delegated_and_equal_the_reference(name, variant):
    """ε inside, no bias correction, the ema / rate-in-buffer momentum forms, decoupled decay outside AdamW, rules
    torch has no fused kernel for: no torch fused kernel runs, and the result is the reference loop's (the
    multi-tensor fallback equals it bit for bit in float32)."""
    spec, opts = REGISTRY[name], REGISTRY[name].variants[variant]
    init = _init(torch.float32)
    a, b = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    fused, ref = spec.build(a, impl="torch_fused", **opts), spec.build(b, impl="reference", **opts)
    spy = FusedOps()
    _run(opts, [(a, fused), (b, ref)], steps=4, spy=spy)
    assert spy.calls == {}
    for i, (p, q) in enumerate(zip(a, b)):
        assert torch.equal(p, q), f"{name}/{variant} param {i}: max diff {(p - q).abs().max()}"


@pytest.mark.parametrize("options", [dict(eps_placement="inside"), dict(bias_correction=False),
                                     dict(efficient_form=True), dict(amsgrad=True, amsgrad_max="corrected")],
                         ids=["eps-inside", "no-bias-correction", "efficient", "amsgrad-corrected"])
def test_adam_conventions_that_differ_from_torch_are_not_delegated(options):
    p = torch.nn.Parameter(torch.randn(4))
    opt = descentlab.Adam([p], impl="torch_fused", **options)
    assert torch_fused_kind(opt.plan(opt.param_groups[0])) is None
    spy = FusedOps()
    for _ in range(2):
        p.grad = torch.randn(4)
        with spy:
            opt.step()
    assert spy.calls == {}


def test_sgd_forms_that_differ_from_torch_are_not_delegated():
    for options in (dict(momentum=0.9, momentum_form="ema"), dict(momentum=0.9, lr_in_buffer=True),
                    dict(momentum=0.9, weight_decay=0.1, decoupled_weight_decay=True)):
        opt = descentlab.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, **options)
        assert torch_fused_kind(opt.plan(opt.param_groups[0])) is None, options
    opt = descentlab.Adagrad([torch.nn.Parameter(torch.zeros(2))], eps_placement="inside")
    assert torch_fused_kind(opt.plan(opt.param_groups[0])) is None


def test_a_group_mixes_delegated_and_fallback_tensors():
    """Tensors torch's kernels cannot take (complex, non-contiguous, a wider state_dtype's bf16 copy) step on the
    fallback paths, the others in one fused call; every tensor ends where the reference loop puts it."""
    gen = torch.Generator().manual_seed(3)
    init = [torch.randn(6, generator=gen), torch.randn(3, 4, generator=gen).t(), torch.randn(5, dtype=torch.complex64,
                                                                                         generator=gen)]
    a = [torch.nn.Parameter(t.clone()) for t in init]
    b = [torch.nn.Parameter(t.clone()) for t in init]
    fused, ref = descentlab.Adam(a, impl="torch_fused", lr=0.01), descentlab.Adam(b, impl="reference", lr=0.01)
    spy = FusedOps()
    for _ in range(4):
        for p, q in zip(a, b):
            g = torch.randn(p.shape, dtype=p.dtype, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        with spy:
            fused.step()
        ref.step()
    assert spy.calls == {"_fused_adam_": 4}
    torch.testing.assert_close(a[0], b[0], **TORCH_FUSED_TOL[torch.float32])
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])  # the reference loop's own tensors


def test_auto_keeps_cpu_tensors_off_torchs_kernels():
    """On the CPU ``impl="auto"`` keeps its C kernels (torch's fused kernels are the default off the CPU only)."""
    p = torch.nn.Parameter(torch.randn(8))
    opt = descentlab.Adam([p])
    spy = FusedOps()
    for _ in range(3):
        p.grad = torch.randn(8)
        with spy:
            opt.step()
    assert spy.calls == {}


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adagrad"])
def test_grad_scaler_as_torch_fused(name):
    """``torch.amp.GradScaler`` hands the scale to the kernels (each gradient divided by it, as torch's fused
    optimizers do; a scale of 3 is not a power of two, so dividing and multiplying by 1/3 differ)."""
    opts = {"sgd": dict(momentum=0.9)}.get(name, {})
    init = _init(torch.float32)[:2]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    opt = REGISTRY[name].build(ours, impl="torch_fused", **opts)
    twin = torch_twin(name, theirs, fused=True, **opts)
    scalers = [torch.amp.GradScaler("cpu", init_scale=3.0), torch.amp.GradScaler("cpu", init_scale=3.0)]
    gen = torch.Generator().manual_seed(5)
    for _ in range(4):
        targets = [torch.randn(p.shape, generator=gen) for p in ours]
        for params, o, scaler in ((ours, opt, scalers[0]), (theirs, twin, scalers[1])):
            o.zero_grad()
            loss = sum(((p - t) ** 2).sum() for p, t in zip(params, targets))
            scaler.scale(loss).backward()
            scaler.step(o)
            scaler.update()
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q), (p - q).abs().max()
        assert torch.equal(p.grad, q.grad)  # left unscaled by the kernel, as torch's


def test_a_step_with_found_inf_changes_nothing():
    p = torch.nn.Parameter(torch.randn(4))
    opt = descentlab.Adam([p], impl="torch_fused")
    p.grad = torch.randn(4)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[p].items()}
    weights = p.detach().clone()
    p.grad = torch.full((4,), float("inf"))
    opt.found_inf, opt.grad_scale = torch.tensor(1.0), torch.tensor(2.0)
    opt.step()
    del opt.found_inf, opt.grad_scale
    assert torch.equal(p, weights)
    assert all(torch.equal(opt.state[p][k], v) for k, v in before.items())


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adagrad"])
def test_state_dict_round_trip_with_torch_fused(name):
    """A descentlab state continues in torch (fused=True) and a torch state in descentlab, both to the bit. (A saved
    group carries torch's ``fused`` flag, which torch reads at the step: ours is built with ``fused=True``, a hint
    descentlab accepts, so that the torch optimizer loading it stays fused.)"""
    opts = {"sgd": dict(momentum=0.9), "adam": dict(amsgrad=True)}.get(name, {})
    init = _init(torch.float32)[:2]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    opt = REGISTRY[name].build(ours, impl="torch_fused", fused=True, **opts)
    twin = torch_twin(name, theirs, fused=True, **opts)
    _run(opts, [(ours, opt), (theirs, twin)], steps=3, skip=False)
    # swap: torch continues from descentlab's state and descentlab from torch's
    ours2 = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    theirs2 = [torch.nn.Parameter(q.detach().clone()) for q in theirs]
    twin2 = torch_twin(name, ours2, fused=True, **opts)
    twin2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as saved and loaded: torch keeps a loaded float32 step
    opt2 = REGISTRY[name].build(theirs2, impl="torch_fused", fused=True, **opts)
    opt2.load_state_dict(copy.deepcopy(twin.state_dict()))  # tensor as it is, so a live state_dict would be shared
    _run(opts, [(ours, opt), (theirs, twin), (ours2, twin2), (theirs2, opt2)], steps=3, skip=False)
    assert all(group["fused"] for o in (twin2, opt2) for group in o.param_groups)
    for p, q, p2, q2 in zip(ours, theirs, ours2, theirs2):
        assert torch.equal(p, q) and torch.equal(p, p2) and torch.equal(p, q2)


def test_impl_names_torch_fused_in_its_error():
    with pytest.raises(ValueError, match="impl must be one of .*'torch_fused'.*got 'torch'"):
        descentlab.Adam([torch.nn.Parameter(torch.zeros(2))], impl="torch")



@pytest.mark.parametrize("name", ["adam", "sgd", "adagrad"])
def test_found_inf_reaches_the_kernels_as_torch_passes_it(name):
    """``torch_fused_step`` takes GradScaler's ``found_inf`` as torch's fused optimizers do: where it is 1 nothing
    changes, the step counters included; where it is 0 the step is the ordinary one."""
    from descentlab.fused.torch_fused import torch_fused_step

    opts = {"sgd": dict(momentum=0.9)}.get(name, {})
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(2)]
    opt = REGISTRY[name].build(params, impl="torch_fused", **opts)
    for p in params:
        p.grad = torch.randn(4)
    opt.step()
    group = opt.param_groups[0]
    plan = opt.plan(group)
    before = [(p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}) for p in params]
    for p in params:
        p.grad = torch.randn(4)
    rest = torch_fused_step(opt.state, group, plan, params, lambda p, s: opt._init_state(p, group, s),
                            found_inf=torch.tensor(1.0))
    assert rest == []
    for p, (weights, state) in zip(params, before):
        assert torch.equal(p, weights)
        assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())
    torch_fused_step(opt.state, group, plan, params, lambda p, s: opt._init_state(p, group, s),
                     found_inf=torch.tensor(0.0))
    assert all(not torch.equal(p, weights) for p, (weights, _) in zip(params, before))
