"""``descentlab.ScheduleFreeAdamW`` / ``ScheduleFreeSGD`` against facebookresearch's ``schedulefree`` package
(``AdamWScheduleFree`` / ``SGDScheduleFree``, both its foreach and its loop path), side by side: parameters,
state (``z``, ``exp_avg_sq``) and the group's running scalars (``k``, ``weight_sum``, ``lr_max``,
``scheduled_lr``, ``train_mode``) equal to the bit after every step, in float32 and float64, on every execution
path, with ``eval()`` / ``train()`` switches mid-run, warm-up, ``r``, ``weight_lr_power``, param groups, a changed
rate and state_dicts moving both ways. Skipped, with the reason, where schedulefree is not installed (it comes
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
    import schedulefree
except ImportError as err:  # pragma: no cover - the test extra installs it
    schedulefree = None
    MISSING = f"schedulefree is not importable ({err}); pip install -e '.[test]'"
else:
    MISSING = ""

needs_schedulefree = pytest.mark.skipif(schedulefree is None, reason=MISSING or "schedulefree present")

PAIRS = {"adamw": (descentlab.ScheduleFreeAdamW, "AdamWScheduleFree"),
         "sgd": (descentlab.ScheduleFreeSGD, "SGDScheduleFree")}
OPTIONS = {
    "adamw": {"defaults": {}, "tuned": {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3},
              "warmup_r": {"lr": 0.02, "warmup_steps": 7, "r": 1.0, "weight_lr_power": 1.0, "weight_decay": 0.05}},
    "sgd": {"defaults": {"lr": 0.1}, "tuned": {"lr": 0.05, "momentum": 0.5},
            "warmup_r": {"lr": 0.05, "warmup_steps": 7, "r": 2.0, "weight_lr_power": 0.0, "weight_decay": 0.05}},
}
GRID = [(kind, name) for kind, names in OPTIONS.items() for name in names]
SHAPES = [(5, 3), (7,), (), (0,), (2, 3, 4)]
SCALARS = ("k", "weight_sum", "lr_max", "scheduled_lr", "train_mode")


def _theirs(kind):
    return getattr(schedulefree, PAIRS[kind][1])


def _params(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in SHAPES], gen


def _clones(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _grads(ours, theirs, gen, step):
    """The same gradient for both (a fresh copy each: the package overwrites .grad); tensor 1 skips every third
    step, so its state is created late and its z lags."""
    for i, (p, q) in enumerate(zip(ours, theirs)):
        if i == 1 and step % 3 == 2:
            p.grad = q.grad = None
            continue
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.3 * p.detach()
        p.grad, q.grad = g.clone(), g.clone()


def _same(ours, theirs, opt, their_opt, what):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        assert torch.equal(p, q), f"{what}: tensor {i} differs by {(p - q).abs().max()}"
        assert set(opt.state.get(p, {})) == set(their_opt.state.get(q, {})), what
        for key, value in their_opt.state.get(q, {}).items():
            assert torch.equal(opt.state[p][key], value), f"{what}: tensor {i} state {key!r}"
    for index, (group, theirs_group) in enumerate(zip(opt.param_groups, their_opt.param_groups)):
        for key in SCALARS:
            assert group[key] == theirs_group[key], f"{what}: group {index} {key}: {group[key]} vs {theirs_group[key]}"


def _run_side_by_side(kind, options, dtype, impl, foreach, steps=30, switch_at=(10, 20)):
    ours, gen = _params(dtype)
    theirs = _clones(ours)
    opt = PAIRS[kind][0](ours, impl=impl, **options)
    their_opt = _theirs(kind)(theirs, foreach=foreach, **options)
    opt.train()
    their_opt.train()
    for step in range(steps):
        if step in switch_at:  # evaluate at x mid-run, then back to y
            opt.eval()
            their_opt.eval()
            _same(ours, theirs, opt, their_opt, f"eval before step {step + 1}")
            opt.train()
            their_opt.train()
        _grads(ours, theirs, gen, step)
        opt.step()
        their_opt.step()
        _same(ours, theirs, opt, their_opt, f"step {step + 1}")
    opt.eval()
    their_opt.eval()
    _same(ours, theirs, opt, their_opt, "eval at the end")


@needs_schedulefree
@pytest.mark.parametrize("foreach", [True, False], ids=["their_foreach", "their_loop"])
@pytest.mark.parametrize("impl", ["reference", "auto", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind, name", GRID, ids=[f"{k}-{n}" for k, n in GRID])
def test_equals_the_package_step_by_step(kind, name, dtype, impl, foreach):
    _run_side_by_side(kind, OPTIONS[kind][name], dtype, impl, foreach)


@needs_schedulefree
@pytest.mark.parametrize("kind", list(PAIRS))
def test_param_groups_a_changed_rate_and_a_group_without_gradients(kind):
    """Each group keeps its own k, weight_sum and lr_max; a group whose tensors have no gradient still counts the
    step (as the package); lr raised mid-run raises lr_max, lowered it does not."""
    ours, gen = _params(torch.float64)
    theirs = _clones(ours)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:4], "lr": 0.03}, {"params": ps[4:]}]  # noqa: E731
    opt = PAIRS[kind][0](groups(ours), lr=0.01, warmup_steps=3)
    their_opt = _theirs(kind)(groups(theirs), lr=0.01, warmup_steps=3)
    opt.train()
    their_opt.train()
    for step in range(24):
        if step in (8, 16):
            for group in opt.param_groups + their_opt.param_groups:
                group["lr"] *= 2.0 if step == 8 else 0.25
        _grads(ours, theirs, gen, step)
        ours[4].grad = theirs[4].grad = None  # the last group never gets a gradient
        opt.step()
        their_opt.step()
        _same(ours, theirs, opt, their_opt, f"step {step + 1}")
    assert opt.param_groups[2]["k"] == 24 and len(opt.state.get(ours[4], {})) == 0


@needs_schedulefree
@pytest.mark.parametrize("kind", list(PAIRS))
def test_state_dicts_move_both_ways_and_round_trip(kind):
    """Saved in eval mode (the package's advice), loaded into a fresh optimizer of either library over the saved
    weights, switched back to train mode: every copy continues as the uninterrupted run."""
    ours, gen = _params(torch.float32)
    theirs = _clones(ours)
    opt, their_opt = PAIRS[kind][0](ours, lr=0.02), _theirs(kind)(theirs, lr=0.02)
    opt.train()
    their_opt.train()
    for step in range(6):
        _grads(ours, theirs, gen, step)
        opt.step()
        their_opt.step()
    opt.eval()
    their_opt.eval()
    mine, from_theirs, theirs_from_mine = _clones(ours), _clones(theirs), _clones(ours)
    copies = [(mine, PAIRS[kind][0](mine, lr=0.02), opt), (from_theirs, PAIRS[kind][0](from_theirs, lr=0.02), their_opt),
              (theirs_from_mine, _theirs(kind)(theirs_from_mine, lr=0.02), opt)]
    for _, copy, source in copies:
        copy.load_state_dict(_saved(source.state_dict()))
        assert copy.param_groups[0]["train_mode"] is False and copy.param_groups[0]["k"] == 6
    everyone = [(ours, opt), (theirs, their_opt)] + [(params, copy) for params, copy, _ in copies]
    for _, o in everyone:
        o.train()
    for step in range(6, 14):
        _grads(ours, theirs, gen, step)
        for params, _, _ in copies:
            for p, q in zip(params, ours):
                p.grad = None if q.grad is None else q.grad.clone()
        for _, o in everyone:
            o.step()
    for params, copy, _ in copies:
        _same(params, theirs, copy, their_opt, type(copy).__module__)


def _saved(state_dict):
    """Through torch.save / torch.load, as a checkpoint travels (a live state_dict shares its tensors)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@needs_schedulefree
@pytest.mark.parametrize("kind", list(PAIRS))
def test_keys_signature_and_defaults_are_the_packages(kind):
    cls, theirs_cls = PAIRS[kind][0], _theirs(kind)
    theirs = inspect.signature(theirs_cls).parameters
    ours = inspect.signature(cls).parameters
    positional = [n for n, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == list(theirs)
    for name in theirs:
        assert ours[name].default == theirs[name].default, name
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt, their_opt = cls([p]), theirs_cls([q])
    extra = set(opt.param_groups[0]) - set(their_opt.param_groups[0])
    assert set(their_opt.param_groups[0]) <= set(opt.param_groups[0]) and extra <= {"maximize", "impl", "nonfinite",
                                                                                     "state_dtype"}
    their_opt.train()
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    opt.step()
    their_opt.step()
    assert list(opt.state[p]) == list(their_opt.state[q])


@needs_schedulefree
@pytest.mark.parametrize("kind", list(PAIRS))
def test_train_and_eval_modes(kind):
    """step() in eval mode is refused by both; a fresh descentlab optimizer starts in train mode (the stated
    difference: the package starts in eval mode and refuses step() until train(), which on a fresh optimizer
    changes nothing else), so a loop that never calls train() gets the package's numbers."""
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt, their_opt = PAIRS[kind][0]([p], lr=0.1), _theirs(kind)([q], lr=0.1)
    assert opt.param_groups[0]["train_mode"] is True and their_opt.param_groups[0]["train_mode"] is False
    q.grad = torch.ones(3)
    with pytest.raises(Exception, match="not in train mode"):
        their_opt.step()
    their_opt.train()
    for _ in range(3):
        p.grad, q.grad = torch.full((3,), 0.5), torch.full((3,), 0.5)
        opt.step()  # no train() call needed
        their_opt.step()
    assert torch.equal(p, q)
    opt.eval()
    their_opt.eval()
    opt.eval()  # a second eval() changes nothing, as the package's
    their_opt.eval()
    assert torch.equal(p, q)
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    with pytest.raises(Exception, match="not in train mode"):
        their_opt.step()


def test_eval_holds_the_average_of_the_iterates():
    """With r = 0 and weight_lr_power = 0 every iterate weighs the same: x is the plain mean of z₁ … z_T
    (the averaging the method is named for), recovered from y and z by eval()."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = descentlab.ScheduleFreeSGD([w], lr=0.1, momentum=0.8, weight_lr_power=0.0)
    zs = []
    for t in range(12):
        w.grad = 2 * w.detach() + 1
        opt.step()
        zs.append(opt.state[w]["z"].clone())
    opt.eval()
    torch.testing.assert_close(w.detach(), torch.stack(zs).mean(0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [descentlab.ScheduleFreeAdamW, descentlab.ScheduleFreeSGD], ids=["adamw", "sgd"])
def test_the_multi_tensor_path_runs_the_rule_on_tensor_lists(cls, monkeypatch):
    """impl="foreach" steps the schedule-free rules on TensorLists (the group's scalars once per group)."""
    module = descentlab.optim.schedulefree
    name = "schedulefree_adamw" if cls is descentlab.ScheduleFreeAdamW else "schedulefree_sgd"
    rule, seen = getattr(module, name), []

    def spy(param, *args, **kwargs):
        seen.append(type(param))
        rule(param, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    ps = [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]
    opt = cls(ps, lr=0.01, impl="foreach")
    for _ in range(2):
        for p in ps:
            p.grad = torch.randn(3)
        opt.step()
    assert seen == [torch.nn.Parameter] * 3 + [TensorList]
    assert opt.param_groups[0]["k"] == 2


def test_bad_group_scalars_in_a_loaded_state_dict_are_named():
    p = torch.nn.Parameter(torch.ones(2))
    opt = descentlab.ScheduleFreeAdamW([p])
    saved = opt.state_dict()
    saved["param_groups"][0]["k"] = -3
    with pytest.raises(ValueError, match="k must be an integer >= 0, got -3"):
        opt.load_state_dict(saved)
    saved["param_groups"][0].update(k=0, weight_sum=float("nan"))
    with pytest.raises(ValueError, match="weight_sum"):
        opt.load_state_dict(saved)


def test_docstring_examples_run():
    module = importlib.import_module("descentlab.optim.schedulefree")
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
