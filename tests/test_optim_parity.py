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
#: The rows stepped by gradients (every row but those whose step needs a closure: LBFGS, run by the closure tests
#: below); the matrices-only and sparse-only rows get matrices and sparse gradients (registry.REQUIREMENTS).
ROW_OF = {REGISTRY[name].cls.__name__: name for name in TWINS}
GRADIENT_STEPPED = [cls_name for cls_name in GRIDS if "closure" not in REGISTRY[ROW_OF[cls_name]].requires]
CLOSURE_STEPPED = [cls_name for cls_name in GRIDS if "closure" in REGISTRY[ROW_OF[cls_name]].requires]


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


def _requires(cls) -> frozenset:
    name = ROW_OF.get(cls.__name__) if isinstance(cls, type) else None
    return REGISTRY[name].requires if name else frozenset()


def _model_params(dtype, seed, requires=frozenset()):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (3, 4), (4, 4), (2, 6)] if "matrices" in requires else [(5, 3), (3,), (), (2, 2, 2)]
    if "sparse" in requires:
        shapes = [(6, 3), (5,), (4, 2), (3, 2, 2)]
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


def _gradient(param, generator, requires=frozenset()):
    """A gradient like a loss's (pulled towards the parameter); for a sparse-only row a sparse one: random rows,
    some repeated (coalesced by the rule), sometimes none."""
    dtype = param.dtype
    if "sparse" not in requires:
        return torch.randn(param.shape, generator=generator, dtype=dtype) + 0.2 * param.detach()
    count = int(torch.randint(0, 5, (), generator=generator))
    rows = torch.randint(0, param.shape[0], (count,), generator=generator)
    values = torch.randn((count, *param.shape[1:]), generator=generator, dtype=dtype) + 0.2 * param.detach()[rows]
    return torch.sparse_coo_tensor(rows[None], values, param.shape, check_invariants=True)


def _run_pair(ours_cls, theirs_cls, opts, dtype, steps, seed=0, groups=False, impl="reference"):
    requires = _requires(theirs_cls)
    init = _model_params(dtype, seed, requires)
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
            grad = _gradient(pa, g, requires)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    return a, b, oa, ob


@pytest.mark.parametrize("cls_name", GRADIENT_STEPPED)
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


@pytest.mark.parametrize("cls_name", GRADIENT_STEPPED)
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


@pytest.mark.parametrize("cls_name", GRADIENT_STEPPED)
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


@pytest.mark.parametrize("cls_name", GRADIENT_STEPPED)
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
            grad = _gradient(p, g, _requires(theirs))
            p.grad, q.grad = grad.clone(), grad.clone()
        src.step()
        resumed.step()
    for p, q in zip(src_params, resumed_params):
        assert torch.equal(p, q), f"{cls_name} {direction}: trajectories diverge after load_state_dict"


def test_registry_torch_equivalents_cover_every_torch_named_class():
    named = {spec.cls.__name__ for spec in REGISTRY.values() if spec.torch_equivalent is not None}
    assert {"SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "NAdam", "Adamax"} <= named
    assert {"Adafactor", "LBFGS", "Muon", "SparseAdam"} <= named


# -- rows stepped through a closure (LBFGS): a fixed smooth loss, step(closure) on both sides -----------------


def _closure_pair(ours_cls, theirs_cls, opts, dtype, seed=0):
    init = _model_params(dtype, seed)
    a = [torch.nn.Parameter(t.clone()) for t in init]
    b = [torch.nn.Parameter(t.clone()) for t in init]
    g = torch.Generator().manual_seed(seed + 1)
    targets = [torch.randn(t.shape, generator=g, dtype=dtype) for t in init]

    def closure_for(params, opt):
        def closure():
            opt.zero_grad()
            loss = sum(((p - q) ** 2).sum() + 0.5 * ((p - q) ** 4).sum() + 0.1 * (p.sum() * q.sum()) ** 2
                       for p, q in zip(params, targets))
            loss.backward()
            return loss
        return closure

    return a, b, ours_cls(a, **opts), theirs_cls(b, **opts), closure_for


def _assert_same_lbfgs_state(sa, sb, where):
    assert set(sa) == set(sb), f"{where}: state keys {sorted(sa)} != torch's {sorted(sb)}"
    for key, value in sb.items():
        mine = sa[key]
        if isinstance(value, list):
            assert len(mine) == len(value), (where, key)
            for x, y in zip(mine, value):
                assert (x is None and y is None) or torch.equal(torch.as_tensor(x), torch.as_tensor(y)), (where, key)
        else:
            assert torch.equal(torch.as_tensor(mine), torch.as_tensor(value)), (where, key, mine, value)


@pytest.mark.parametrize("cls_name", CLOSURE_STEPPED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_closure_rows_bit_exact_with_torch_over_option_grid(cls_name, dtype):
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    for opts in _combos(GRIDS[cls_name]):
        a, b, oa, ob, closure_for = _closure_pair(ours, theirs, opts, dtype)
        ca, cb = closure_for(a, oa), closure_for(b, ob)
        for call in range(3):
            la, lb = oa.step(ca), ob.step(cb)
            assert torch.equal(la, lb), (cls_name, opts, call)
            for pa, pb in zip(a, b):
                assert torch.equal(pa, pb), f"{cls_name}{opts} after {call + 1} calls: max diff {(pa - pb).abs().max()}"
            _assert_same_lbfgs_state(oa.state[a[0]], ob.state[b[0]], f"{cls_name}{opts}")


@pytest.mark.parametrize("cls_name", CLOSURE_STEPPED)
@pytest.mark.parametrize("direction", ["torch_to_ours", "ours_to_torch"])
def test_closure_rows_state_dict_interchange_continues_identically(cls_name, direction):
    ours, theirs = getattr(descentlab, cls_name), getattr(torch.optim, cls_name)
    opts = {"history_size": 3, "max_iter": 4}
    a, b, oa, ob, closure_for = _closure_pair(ours, theirs, opts, torch.float64)
    src, src_params, dst_cls = (ob, b, ours) if direction == "torch_to_ours" else (oa, a, theirs)
    src_closure = closure_for(src_params, src)
    src.step(src_closure)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in src_params]
    resumed = dst_cls(resumed_params, **opts)
    resumed.load_state_dict(copy.deepcopy(src.state_dict()))
    resumed_closure = closure_for(resumed_params, resumed)
    for _ in range(3):
        src.step(src_closure)
        resumed.step(resumed_closure)
    for p, q in zip(src_params, resumed_params):
        assert torch.equal(p, q), f"{cls_name} {direction}: trajectories diverge after load_state_dict"


def test_lbfgs_refuses_what_torch_refuses():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="per-parameter options"):
        descentlab.LBFGS([{"params": [p]}, {"params": [torch.nn.Parameter(torch.ones(1))]}])
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        descentlab.LBFGS([p], lr=torch.tensor([1.0, 2.0]))
    opt = descentlab.LBFGS([p])
    with pytest.raises(ValueError, match="per-parameter options"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))]})
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()


def test_muon_and_sparse_adam_refuse_what_torch_refuses():
    with pytest.raises(ValueError, match="only supports 2D parameters"):
        descentlab.Muon([torch.nn.Parameter(torch.ones(3))])
    with pytest.raises(ValueError, match="only supports 2D parameters"):
        descentlab.Muon([torch.nn.Parameter(torch.ones(2, 2))]).add_param_group(
            {"params": [torch.nn.Parameter(torch.ones(2, 2, 2))]})
    with pytest.raises(ValueError, match="Complex params at indices"):
        descentlab.SparseAdam([torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))])
    p = torch.nn.Parameter(torch.ones(3))
    opt = descentlab.SparseAdam([p])
    p.grad = torch.ones(3)
    for impl in ("reference", "foreach", "auto"):
        opt.param_groups[0]["impl"] = impl
        with pytest.raises(RuntimeError, match="does not support dense gradients"):
            opt.step()
    w = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.complex64))
    w.grad = torch.ones(2, 2, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="Adafactor does not support complex parameters"):
        descentlab.Adafactor([w]).step()


@pytest.mark.parametrize("cls_name", GRADIENT_STEPPED)
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
        grad = _gradient(pa, torch.Generator().manual_seed(5), _requires(theirs))
        pa.grad, pb.grad = grad.clone(), grad.clone()
    oa.step()
    ob.step()
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)
        if "step" in ob.state[pb] and not torch.is_tensor(ob.state[pb]["step"]):  # SparseAdam keeps an int
            assert type(oa.state[pa]["step"]) is type(ob.state[pb]["step"]) and oa.state[pa]["step"] == ob.state[pb]["step"]
        elif "step" in ob.state[pb]:
            assert torch.is_tensor(oa.state[pa]["step"]) and torch.equal(oa.state[pa]["step"], ob.state[pb]["step"])


@pytest.mark.parametrize("impl", ["auto", "reference", "foreach"])
def test_a_stateless_step_leaves_no_empty_state_entries(impl):
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours, theirs = descentlab.SGD([p], lr=0.1, impl=impl), torch.optim.SGD([q], lr=0.1)
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    ours.step()
    theirs.step()
    assert ours.state_dict()["state"] == theirs.state_dict()["state"] == {}
