"""Registry-driven behaviour of every optimizer row: convergence, dtypes, skipping, validation, policies."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest
import torch

import descentlab
from descentlab.optim.registry import REGISTRY, create_optimizer, get_spec
from helpers import torch_twins
from optimizer_cases import CASES, case, skip_unmet

NAMES = list(REGISTRY)

# Per-row budgets and tolerances for the parabola and Rosenbrock runs: tests/optimizer_cases.py.


def test_every_registry_row_has_a_case():
    missing = [name for name in REGISTRY if name not in CASES]
    assert not missing, (f"registry rows without a test case: {missing}; add a Case for each to CASES in "
                         f"tests/optimizer_cases.py (and a reference rule in tests/reference_rules.py)")
    stale = [name for name in CASES if name not in REGISTRY]
    assert not stale, f"tests/optimizer_cases.py has cases for no registry row: {stale}"

def _parabola_grad(p):
    return torch.stack([2 * p[0], 20 * p[1]])


def _rosenbrock_grad(p):
    x, y = p[0], p[1]
    return torch.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


_LOSSES = {"parabola": lambda p: p[0] ** 2 + 10 * p[1] ** 2,
           "rosenbrock": lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2}


def _minimise(name, lr, steps, grad, start, **options):
    """``steps`` steps from ``start``, meeting the row's contract (registry.REQUIREMENTS): the point as a 1 × 2
    matrix for a matrices-only row, the gradient as a sparse tensor for a sparse-only one, ``steps`` calls of
    ``step(closure)`` for a closure row."""
    requires = REGISTRY[name].requires
    shape = (1, 2) if "matrices" in requires else (2,)
    x = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64).reshape(shape))
    opts = {"lr": lr, **options, **case(name).minimise_options}
    opt = create_optimizer(name, [x], **opts)

    def gradient():
        g = grad(x.detach().reshape(2)).reshape(shape)  # analytic gradient: the same as autograd's, faster
        return g.to_sparse() if "sparse" in requires else g

    def closure():
        x.grad = gradient()
        return _LOSSES["parabola" if grad is _parabola_grad else "rosenbrock"](x.detach().reshape(2))

    for _ in range(steps):
        if "closure" in requires:
            opt.step(closure)
        else:
            x.grad = gradient()
            opt.step()
    if callable(getattr(opt, "eval", None)):
        # Stated adaptation for the schedule-free rows: their parameters hold y, the point the gradient is taken
        # at; the point they return, and the one their theory is about, is the average x that eval() puts there.
        opt.eval()
    return x.detach().reshape(2)


def test_analytic_gradients_match_autograd():
    p = torch.tensor([-0.7, 1.3], dtype=torch.float64, requires_grad=True)
    ((1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2 + p[0] ** 2 + 10 * p[1] ** 2).backward()
    torch.testing.assert_close(p.grad, _rosenbrock_grad(p.detach()) + _parabola_grad(p.detach()))


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_parabola(name):
    lr, steps = case(name).parabola
    x = _minimise(name, lr, steps, _parabola_grad, [3.0, -2.0])
    assert x.norm() < case(name).parabola_tol, f"{name} ended at {x.tolist()}"


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
    lr, steps = case(name).rosenbrock
    x = _minimise(name, lr, steps, _rosenbrock_grad, [-1.0, 1.5])
    dist = (x - torch.tensor([1.0, 1.0], dtype=torch.float64)).norm()
    assert dist < case(name).rosenbrock_tol, f"{name} ended at {x.tolist()} (distance {dist:.3g})"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_is_preserved(name, dtype):
    skip_unmet(name, ("matrices",))  # (4, 3) matrices with dense gradients, no closure
    spec = REGISTRY[name]
    for vname, variant in spec.variants.items():
        p = torch.nn.Parameter(torch.randn(4, 3).to(dtype))
        opt = spec.build([p], **variant)
        for _ in range(3):
            p.grad = torch.randn(4, 3).to(dtype)
            opt.step()
        assert p.dtype == dtype and torch.isfinite(p.float()).all(), (name, vname)
        for key, value in opt.state[p].items():
            if torch.is_tensor(value) and value.dim() > 0:
                assert value.dtype == dtype, (name, vname, key, value.dtype)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_without_gradients_are_skipped(name):
    skip_unmet(name)
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    opt = REGISTRY[name].build([a, b])
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b, torch.ones(2))
    assert not torch.equal(a, torch.ones(3))
    if not case(name).eager_state:  # torch's Adagrad creates its state in the constructor; ours does too
        assert len(opt.state[b]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_name_the_culprit(name):
    spec = REGISTRY[name]
    assert spec.bad_inputs, f"{name} declares no bad inputs"
    for kwargs, fragment in spec.bad_inputs:
        with pytest.raises(ValueError) as info:
            spec.build([torch.nn.Parameter(torch.ones(2))], **kwargs)
        assert fragment in str(info.value), (name, kwargs, str(info.value))


@pytest.mark.parametrize("name", NAMES)
def test_bad_value_in_a_later_group_names_the_group(name):
    skip_unmet(name)
    spec = REGISTRY[name]
    with pytest.raises(ValueError, match=r"param group 1: lr must be in \[0, inf\), got -1"):
        spec.build([{"params": [torch.nn.Parameter(torch.ones(1))]},
                    {"params": [torch.nn.Parameter(torch.ones(1))], "lr": -1.0}])


@pytest.mark.parametrize("name", NAMES)
def test_structural_errors(name):
    skip_unmet(name)
    spec = REGISTRY[name]
    with pytest.raises(ValueError, match="empty parameter list"):
        spec.build([])
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        spec.build([{"params": [p]}, {"params": [p]}])
    with pytest.warns(UserWarning, match="duplicate parameters"):  # as torch: a warning, and stepped twice
        twice = spec.build([p, p])
    twin = spec.torch_equivalent
    if twin is not None and twin[0].__name__ == spec.cls.__name__:
        q = torch.nn.Parameter(torch.ones(2))
        with pytest.warns(UserWarning, match="duplicate parameters"):
            theirs = twin[0]([q, q], **spec.defaults)
        for _ in range(3):
            p.grad, q.grad = torch.full((2,), 0.5), torch.full((2,), 0.5)
            twice.step()
            theirs.step()
        assert torch.equal(p, q), (name, p, q)
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = spec.build(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    if spec.cls.accepts_sparse_gradients and not opt.param_groups[0].get("weight_decay"):
        before = emb.weight.detach().clone()
        opt.step()  # SGD and Adagrad take them, as torch's do (tests/test_sparse_gradients.py)
        assert torch.equal(emb.weight[[0, 3, 4]], before[[0, 3, 4]]) and not torch.equal(emb.weight, before)
        return
    with pytest.raises(RuntimeError, match="does not support sparse gradients|not compatible with sparse"):
        opt.step()


# impl and nonfinite are options of every row; eps_placement of the rows with an ε.
UNKNOWN_OPTION_VALUES = [
    (name, *option)
    for name, spec in REGISTRY.items()
    for option in [(key, value, allowed) for key, value, allowed in
                   [("impl", "turbo", "'auto'"), ("nonfinite", "maybe", "'ignore', 'skip', 'raise'")]
                   if key in inspect.signature(spec.cls).parameters]  # LBFGS has neither: torch's whole-vector step
    + ([("eps_placement", "middle", "'inside', 'outside'")]
       if "eps_placement" in inspect.signature(spec.cls).parameters else [])
]


@pytest.mark.parametrize("name,option,value,allowed", UNKNOWN_OPTION_VALUES,
                         ids=[f"{n}-{o}" for n, o, _, _ in UNKNOWN_OPTION_VALUES])
def test_unknown_option_values_list_the_allowed_ones(name, option, value, allowed):
    with pytest.raises(ValueError) as info:
        REGISTRY[name].build([torch.nn.Parameter(torch.ones(1))], **{option: value})
    assert option in str(info.value) and allowed in str(info.value) and repr(value) in str(info.value)


def test_unknown_forms():
    p = [torch.nn.Parameter(torch.ones(1))]
    with pytest.raises(ValueError, match="momentum_form must be one of 'sum', 'ema'"):
        descentlab.SGD(p, lr=0.1, momentum=0.9, momentum_form="average")
    with pytest.raises(ValueError, match="form must be one of 'ema', 'sum'"):
        descentlab.Momentum(p, lr=0.1, form="avg")


def test_unknown_registry_name_suggests_and_lists():
    with pytest.raises(ValueError) as info:
        get_spec("adma")
    assert "Did you mean 'adam'?" in str(info.value)
    for name in NAMES:
        assert name in str(info.value)
    assert get_spec("Adam") is REGISTRY["adam"]


@pytest.mark.parametrize("name", NAMES)
def test_create_optimizer_builds_the_registry_class(name):
    shape = (2, 2) if "matrices" in REGISTRY[name].requires else (2,)
    opt = create_optimizer(name, [torch.nn.Parameter(torch.ones(shape))])
    assert type(opt) is REGISTRY[name].cls
    assert opt.param_groups[0]["lr"] == REGISTRY[name].lr


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_policies(name):
    skip_unmet(name)
    spec = REGISTRY[name]
    bad = torch.tensor([1.0, float("nan"), 2.0])
    # skip on the very first step (no state yet): params untouched, step counted as skipped
    p = torch.nn.Parameter(torch.ones(3))
    opt = spec.build([p], nonfinite="skip")
    p.grad = bad.clone()
    opt.step()
    assert opt.skipped_steps == 1 and torch.equal(p.detach(), torch.ones(3))
    # skip after a step: params and state untouched, step counted as skipped
    p = torch.nn.Parameter(torch.ones(3))
    opt = spec.build([p], nonfinite="skip")
    p.grad = torch.ones(3)
    opt.step()
    before = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[p].items()}
    value = p.detach().clone()
    p.grad = bad.clone()
    opt.step()
    assert opt.skipped_steps == 1 and torch.equal(p.detach(), value)
    for k, v in before.items():
        assert torch.equal(torch.as_tensor(opt.state[p][k]), torch.as_tensor(v)), k
    # raise, for a NaN and for an inf
    for nonfinite in (bad, torch.tensor([1.0, float("inf"), 2.0])):
        opt = spec.build([p], nonfinite="raise")
        p.grad = nonfinite.clone()
        with pytest.raises(FloatingPointError, match="non-finite gradient in param group 0, parameter 0"):
            opt.step()
    # ignore (default): the NaN propagates, as in torch
    opt = spec.build([p])
    p.grad = bad.clone()
    opt.step()
    if case(name).nan_reaches_weights:
        assert torch.isnan(p).any()
    else:  # Case.nan_reaches_weights False (sign(NaN) = 0): the step is taken, the NaN stays in the state
        assert torch.isfinite(p).all() and any(torch.isnan(v).any() for v in opt.state[p].values())


@pytest.mark.parametrize("name", NAMES)
def test_closure_returns_the_loss_and_a_tensor_lr_works(name):
    skip_unmet(name, ("closure", "matrices"))
    p = torch.nn.Parameter(torch.tensor([2.0, -1.0]).reshape((1, 2) if "matrices" in REGISTRY[name].requires else 2))
    opt = REGISTRY[name].build([p], lr=torch.tensor(REGISTRY[name].lr))

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert not torch.equal(p.detach(), torch.tensor([2.0, -1.0]))


@pytest.mark.parametrize("name,opts", [("adam", {}), ("rmsprop", {"centered": True}),
                                       ("sgd", {"lr": 0.1, "momentum": 0.9}), ("adagrad", {}),
                                       ("adadelta", {}), ("nadam", {})])
def test_complex_parameters_match_torch(name, opts):
    (a,), (b,), oa, ob = torch_twins(name, [torch.randn(4, dtype=torch.complex64)], **opts)
    for _ in range(5):
        g = torch.randn(4, dtype=torch.complex64)
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    assert torch.equal(a, b)


@pytest.mark.parametrize("module", ["sgd", "momentum", "adagrad", "adadelta", "rmsprop", "adam", "nadam"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"descentlab.optim.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
