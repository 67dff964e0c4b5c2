"""``descentlab.Lion`` against lion-pytorch's own ``lion_pytorch.Lion`` (its non-Triton path), step by step:
parameters and ``exp_avg`` equal to the bit in float32 and float64 on every execution path, state_dicts moving
both ways, and the signature's defaults. Skipped, with the reason, where lion-pytorch is not installed (it comes
with the test extra)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import io

import pytest
import torch

import descentlab
from descentlab.fused.tensor_list import TensorList

try:
    from lion_pytorch import Lion as TheirLion
except ImportError as err:  # pragma: no cover - the test extra installs it
    TheirLion = None
    MISSING = f"lion-pytorch is not importable ({err}); pip install -e '.[test]'"
else:
    MISSING = ""

needs_lion_pytorch = pytest.mark.skipif(TheirLion is None, reason=MISSING or "lion-pytorch present")

SHAPES = [(5, 3), (7,), (), (0,), (2, 3, 4)]
OPTIONS = {
    "defaults": {},
    "lr_decay": {"lr": 3e-3, "weight_decay": 0.1},
    "decoupled": {"lr": 3e-3, "weight_decay": 0.5, "decoupled_weight_decay": True},
    "betas": {"lr": 0.01, "betas": (0.5, 0.9)},
    "beta_one": {"lr": 0.01, "betas": (1.0, 1.0)},  # lion-pytorch's range includes 1
}


def _params(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in SHAPES], gen


def _clones(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _grads(ours, theirs, gen, step):
    """The same gradient for both (pulled towards the weights, like a loss); tensor 1 skips every third step."""
    for i, (p, q) in enumerate(zip(ours, theirs)):
        if i == 1 and step % 3 == 2:
            p.grad = q.grad = None
            continue
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.3 * p.detach()
        p.grad, q.grad = g.clone(), g.clone()


def _same(ours, theirs, opt, their_opt, what):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        assert torch.equal(p, q), f"{what}: tensor {i} differs by {(p - q).abs().max()}"
        assert set(opt.state[p]) == set(their_opt.state[q]), what
        for key, value in their_opt.state[q].items():
            assert torch.equal(opt.state[p][key], value), f"{what}: tensor {i} state {key!r}"


@needs_lion_pytorch
@pytest.mark.parametrize("impl", ["reference", "auto", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_equals_lion_pytorch_step_by_step(name, dtype, impl):
    ours, gen = _params(dtype)
    theirs = _clones(ours)
    opt = descentlab.Lion(ours, impl=impl, **OPTIONS[name])
    their_opt = TheirLion(theirs, **OPTIONS[name])
    for step in range(30):
        _grads(ours, theirs, gen, step)
        opt.step()
        their_opt.step()
        _same(ours, theirs, opt, their_opt, f"{name} {dtype} {impl} step {step + 1}")


@needs_lion_pytorch
@pytest.mark.parametrize("decoupled", [False, True])
def test_param_groups_and_a_changed_rate_as_lion_pytorch(decoupled):
    """Groups with their own rate; decoupled decay divides by the constructor's lr for every group (lion-pytorch's
    ``_init_lr``), also after the rate is changed mid-run (as a scheduler would)."""
    ours, gen = _params(torch.float64)
    theirs = _clones(ours)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.03}]  # noqa: E731
    opts = {"lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": decoupled}
    opt, their_opt = descentlab.Lion(groups(ours), **opts), TheirLion(groups(theirs), **opts)
    for step in range(20):
        if step == 10:
            for group in opt.param_groups + their_opt.param_groups:
                group["lr"] *= 0.5
        _grads(ours, theirs, gen, step)
        opt.step()
        their_opt.step()
        _same(ours, theirs, opt, their_opt, f"step {step + 1}")


@needs_lion_pytorch
def test_maximize_is_lion_pytorch_on_the_negated_gradient():
    ours, gen = _params(torch.float32)
    theirs = _clones(ours)
    opt, their_opt = descentlab.Lion(ours, lr=0.01, weight_decay=0.1, maximize=True), TheirLion(theirs, lr=0.01,
                                                                                                  weight_decay=0.1)
    for step in range(10):
        _grads(ours, theirs, gen, step)
        for q in theirs:
            if q.grad is not None:
                q.grad.neg_()
        opt.step()
        their_opt.step()
        _same(ours, theirs, opt, their_opt, f"step {step + 1}")


def _saved(state_dict):
    """Through torch.save / torch.load, as a checkpoint travels (a live state_dict shares its tensors)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@needs_lion_pytorch
def test_state_dicts_move_both_ways():
    ours, gen = _params(torch.float32)
    theirs = _clones(ours)
    opt, their_opt = descentlab.Lion(ours, lr=0.01), TheirLion(theirs, lr=0.01)
    for step in range(5):
        _grads(ours, theirs, gen, step)
        opt.step()
        their_opt.step()
    # theirs → a fresh descentlab optimizer over their weights, and ours → a fresh lion-pytorch one over ours
    a, b = _clones(theirs), _clones(ours)
    mine_from_theirs, theirs_from_mine = descentlab.Lion(a, lr=0.01), TheirLion(b, lr=0.01)
    mine_from_theirs.load_state_dict(_saved(their_opt.state_dict()))
    theirs_from_mine.load_state_dict(_saved(opt.state_dict()))
    for step in range(5, 12):
        _grads(ours, theirs, gen, step)
        for p, q, x, y in zip(ours, theirs, a, b):
            x.grad = None if q.grad is None else q.grad.clone()
            y.grad = None if p.grad is None else p.grad.clone()
        for o in (opt, their_opt, mine_from_theirs, theirs_from_mine):
            o.step()
    _same(a, theirs, mine_from_theirs, their_opt, "lion-pytorch's state in descentlab")
    _same(ours, b, opt, theirs_from_mine, "descentlab's state in lion-pytorch")


@needs_lion_pytorch
def test_signature_and_defaults_are_lion_pytorch():
    theirs = inspect.signature(TheirLion).parameters
    ours = inspect.signature(descentlab.Lion).parameters
    positional = [n for n, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == list(theirs)
    for name in theirs:
        assert ours[name].default == theirs[name].default, name
    opt = descentlab.Lion([torch.nn.Parameter(torch.ones(2))])
    assert {k: opt.param_groups[0][k] for k in ("lr", "betas", "weight_decay")} == {"lr": 1e-4, "betas": (0.9, 0.99),
                                                                                   "weight_decay": 0.0}


@needs_lion_pytorch
def test_a_nan_gradient_freezes_the_coordinate_as_in_lion_pytorch():
    """sign(NaN) = 0: the NaN stays in exp_avg and the weight stops moving — in both."""
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt, their_opt = descentlab.Lion([p], lr=0.1), TheirLion([q], lr=0.1)
    for g in ([1.0, float("nan"), -1.0], [1.0, 2.0, -1.0]):
        p.grad, q.grad = torch.tensor(g), torch.tensor(g)
        opt.step()
        their_opt.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)
    torch.testing.assert_close(opt.state[p]["exp_avg"], their_opt.state[q]["exp_avg"], rtol=0, atol=0,
                               equal_nan=True)
    assert p[1] == 1.0 and torch.isnan(opt.state[p]["exp_avg"][1])


def test_the_multi_tensor_path_runs_the_rule_on_tensor_lists(monkeypatch):
    """impl="foreach" really steps Lion on the multi-tensor path (TensorList lifts sign), not the reference loop."""
    seen = []
    rule = descentlab.optim.lion.lion

    def spy(param, *args, **kwargs):
        seen.append(type(param))
        rule(param, *args, **kwargs)

    monkeypatch.setattr(descentlab.optim.lion, "lion", spy)
    ps = [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]
    opt = descentlab.Lion(ps, lr=0.1, impl="foreach")
    for _ in range(2):
        for p in ps:
            p.grad = torch.randn(3)
        opt.step()
    assert seen == [torch.nn.Parameter] * 3 + [TensorList]  # first step creates the state tensor by tensor


def test_complex_parameters_step_as_pairs_of_reals():
    z = torch.nn.Parameter(torch.randn(4, dtype=torch.complex64))
    r = torch.nn.Parameter(torch.view_as_real(z.detach()).clone())
    opt, real_opt = descentlab.Lion([z], lr=0.1, weight_decay=0.1), descentlab.Lion([r], lr=0.1, weight_decay=0.1)
    for _ in range(4):
        g = torch.randn(4, dtype=torch.complex64)
        z.grad, r.grad = g, torch.view_as_real(g).clone()
        opt.step()
        real_opt.step()
    assert torch.equal(torch.view_as_real(z.detach()), r.detach())


def test_docstring_example_runs():
    module = importlib.import_module("descentlab.optim.lion")
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
