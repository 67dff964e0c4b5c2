"""Parity with ``torch.optim``: same trajectories (bit for bit on the reference path, within a few ulps on
the fused path), state keys, signatures, and ``state_dict`` interchange both ways."""

from __future__ import annotations

import copy
import inspect
import itertools

import pytest
import torch

import descentlab
from descentlab.optim.registry import REGISTRY
from optimizer_cases import case

# Grids of torch's own options, per class with a torch twin of the same name (every combination is run): the
# ``torch_grid`` of each row's Case in optimizer_cases.py.
TWINS = [name for name, spec in REGISTRY.items()
         if spec.torch_equivalent is not None and spec.torch_equivalent[0].__name__ == spec.cls.__name__]
GRIDS = {REGISTRY[name].cls.__name__: case(name).torch_grid for name in TWINS}


def test_every_torch_twin_has_an_option_grid():
    missing = [name for name in TWINS if not case(name).torch_grid]
    assert not missing, f"rows {missing} name a torch twin but no torch_grid in tests/optimizer_cases.py"


def _combos(grid):
    keys = list(grid)
    for values in itertools.product(*grid.values()):
        opts = dict(zip(keys, values))
        if opts.get("nesterov") and (opts.get("momentum", 0) == 0 or opts.get("dampening", 0) != 0):
            continue
        yield opts


def _model_params(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (3,), (), (2, 2, 2)]
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


def _run_pair(ours_cls, theirs_cls, opts, dtype, steps, seed=0, groups=False, impl="reference"):
    init = _model_params(dtype, seed)
    a = [torch.nn.Parameter(t.clone()) for t in init]
    b = [torch.nn.Parameter(t.clone()) for t in init]

    def make(cls, ps, **extra):
        if groups:  # two groups with different rates; the last tensor never gets a gradient
            return cls([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.003}], lr=0.02, **opts, **extra)
        return cls(ps, **opts, **extra)

    oa, ob = make(ours_cls, a, impl=impl), make(theirs_cls, b)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        for i, (pa, pb) in enumerate(zip(a, b)):
            if groups and i == len(a) - 1:
                continue
            grad = torch.randn(pa.shape, generator=g, dtype=dtype) + 0.2 * pa.detach()
            pa.grad, pb.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    return a, b, oa, ob


@pytest.mark.parametrize("cls_name", list(GRIDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_bit_exact_with_torch_over_option_grid(cls_name, dtype):
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    for opts in _combos(GRIDS[cls_name]):
        if cls_name in ("SGD",):
            opts = {"lr": 0.05, **opts}
        for steps in (1, 12):
            a, b, oa, ob = _run_pair(ours, theirs, opts, dtype, steps)
            for pa, pb in zip(a, b):
                assert torch.equal(pa, pb), f"{cls_name}{opts} after {steps} steps: max diff {(pa - pb).abs().max()}"
            for pa, pb in zip(a, b):
                sa, sb = oa.state[pa], ob.state[pb]
                assert set(sa) == set(sb), f"{cls_name}{opts}: state keys {sorted(sa)} != torch's {sorted(sb)}"
                for key in sb:
                    assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), (cls_name, opts, key)
                    if torch.is_tensor(sb[key]):
                        assert sa[key].dtype == sb[key].dtype, (cls_name, key)


#: The fused path rounds differently from torch's chains of in-place ops (one expression per element,
#: no FMA), so it is held to torch's own fused-vs-for-loop standard: a few ulps, here after 12 steps.
FUSED_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-13, atol=1e-13)}


@pytest.mark.parametrize("cls_name", list(GRIDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_fused_path_matches_torch_over_option_grid(cls_name, dtype):
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    for opts in _combos(GRIDS[cls_name]):
        if cls_name in ("SGD",):
            opts = {"lr": 0.05, **opts}
        a, b, oa, ob = _run_pair(ours, theirs, opts, dtype, 12, impl="fused")
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pa, pb, **FUSED_TOL[dtype], msg=lambda m: f"{cls_name}{opts}: {m}")
            sa, sb = oa.state[pa], ob.state[pb]
            assert set(sa) == set(sb)
            for key in sb:
                torch.testing.assert_close(torch.as_tensor(sa[key]), torch.as_tensor(sb[key]), **FUSED_TOL[dtype],
                                           msg=lambda m: f"{cls_name}{opts} state {key!r}: {m}")


@pytest.mark.parametrize("cls_name", list(GRIDS))
def test_param_groups_and_params_without_grad_match_torch(cls_name):
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    a, b, oa, ob = _run_pair(ours, theirs, {}, torch.float32, 8, groups=True)
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)
    assert len(oa.state[a[-1]]) == len(ob.state[b[-1]])  # Adagrad creates state eagerly, like torch


def test_nesterov_is_torch_sgd_with_nesterov():
    a, b, _, _ = _run_pair(lambda ps, **k: descentlab.Nesterov(ps, lr=0.03, beta=0.8, weight_decay=0.01, **k),
                           lambda ps, **k: torch.optim.SGD(ps, lr=0.03, momentum=0.8, nesterov=True, weight_decay=0.01),
                           {}, torch.float64, 20)
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)


def test_momentum_sum_form_is_torch_sgd_momentum():
    a, b, _, _ = _run_pair(lambda ps, **k: descentlab.Momentum(ps, lr=0.03, beta=0.8, form="sum", **k),
                           lambda ps, **k: torch.optim.SGD(ps, lr=0.03, momentum=0.8), {}, torch.float64, 20)
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("cls_name", list(GRIDS))
def test_signature_and_defaults_match_torch(cls_name):
    ours = inspect.signature(getattr(descentlab, cls_name).__init__).parameters
    theirs = inspect.signature(getattr(torch.optim, cls_name).__init__).parameters
    for name, p in theirs.items():
        assert name in ours, f"{cls_name} lacks torch's parameter {name!r}"
        assert ours[name].default == p.default, f"{cls_name}.{name}: default {ours[name].default!r} != {p.default!r}"
        assert ours[name].kind == p.kind, f"{cls_name}.{name}: {ours[name].kind} != torch's {p.kind}"
    extra = [n for n in ours if n not in theirs]
    for name in extra:  # descentlab's own options are keyword-only, so torch's positional order is intact
        assert ours[name].kind == inspect.Parameter.KEYWORD_ONLY, (cls_name, name)


@pytest.mark.parametrize("cls_name", list(GRIDS))
@pytest.mark.parametrize("direction", ["torch_to_ours", "ours_to_torch"])
def test_state_dict_interchange_continues_identically(cls_name, direction):
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    opts = {"lr": 0.05} if cls_name == "SGD" else {}
    if cls_name in ("SGD", "RMSprop"):
        opts["momentum"] = 0.5
    a, b, oa, ob = _run_pair(ours, theirs, opts, torch.float32, 5)
    # Reference: continue the torch optimizer; resumed: a fresh optimizer of the other library loads the state.
    src, dst_cls = (ob, ours) if direction == "torch_to_ours" else (oa, theirs)
    src_params = b if direction == "torch_to_ours" else a
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in src_params]
    resumed = dst_cls(resumed_params, **opts, **({"impl": "reference"} if dst_cls is ours else {}))
    resumed.load_state_dict(copy.deepcopy(src.state_dict()))  # as if saved to disk
    g = torch.Generator().manual_seed(99)
    for _ in range(6):
        for p, q in zip(src_params, resumed_params):
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        src.step()
        resumed.step()
    for p, q in zip(src_params, resumed_params):
        assert torch.equal(p, q), f"{cls_name} {direction}: trajectories diverge after load_state_dict"


def test_registry_torch_equivalents_cover_every_torch_named_class():
    named = {spec.cls.__name__ for spec in REGISTRY.values() if spec.torch_equivalent is not None}
    assert {"SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "NAdam", "Adamax"} <= named


@pytest.mark.parametrize("cls_name", list(GRIDS))
def test_a_state_dict_whose_step_is_a_plain_number_loads_as_torch_loads_it(cls_name):
    """Older or converted checkpoints keep ``step`` as a number; torch turns it into its 0-d tensor."""
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    opts = {"lr": 0.05, "momentum": 0.5} if cls_name == "SGD" else {}
    a, b, oa, ob = _run_pair(ours, theirs, opts, torch.float32, 3)
    saved = copy.deepcopy(ob.state_dict())
    for entry in saved["state"].values():
        if "step" in entry:
            entry["step"] = float(entry["step"])
    oa.load_state_dict(copy.deepcopy(saved))
    ob.load_state_dict(saved)
    for pa, pb in zip(a, b):
        grad = torch.randn(pa.shape, generator=torch.Generator().manual_seed(5))
        pa.grad, pb.grad = grad.clone(), grad.clone()
    oa.step()
    ob.step()
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)
        if "step" in ob.state[pb]:
            assert torch.is_tensor(oa.state[pa]["step"]) and torch.equal(oa.state[pa]["step"], ob.state[pb]["step"])


@pytest.mark.parametrize("impl", ["auto", "reference", "foreach"])
def test_a_stateless_step_leaves_no_empty_state_entries(impl):
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours, theirs = descentlab.SGD([p], lr=0.1, impl=impl), torch.optim.SGD([q], lr=0.1)
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    ours.step()
    theirs.step()
    assert ours.state_dict()["state"] == theirs.state_dict()["state"] == {}
