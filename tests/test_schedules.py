"""Schedules: closed forms, agreement with torch's schedulers, the LRScheduler adapter and resume."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import descentlab
from descentlab import schedules as S

T = np.arange(0, 200)


@pytest.mark.parametrize("schedule,expected", [
    (S.constant(0.3), lambda t: np.full_like(t, 0.3, dtype=float)),
    (S.inverse_time(0.2, 0.5), lambda t: 0.2 / (1 + 0.5 * t)),
    (S.exponential(0.1), lambda t: 0.95**t * 0.1),
    (S.exponential(0.1, gamma=0.8), lambda t: 0.8**t * 0.1),
    (S.inverse_sqrt(0.2, k=3.0), lambda t: 3.0 * 0.2 / np.sqrt(t + 1)),
    (S.step_decay(0.4, 7), lambda t: 0.4 * 0.5 ** (t // 7)),
    (S.step_decay(0.4, 3, factor=0.1), lambda t: 0.4 * 0.1 ** (t // 3)),
    (S.linear_warmup(0.1, 10, start_factor=0.2), lambda t: 0.1 * (0.2 + 0.8 * np.minimum(t, 10) / 10)),
    (S.cosine(0.1, 50, min_lr=0.01), lambda t: 0.01 + 0.09 * (1 + np.cos(np.pi * np.minimum(t, 50) / 50)) / 2),
])
def test_closed_forms_against_numpy(schedule, expected):
    got = np.array([schedule(int(t)) for t in T])
    np.testing.assert_allclose(got, expected(T), rtol=1e-12, atol=0)


def test_inverse_sqrt_is_the_notes_one_based_k_over_sqrt_epoch():
    s = S.inverse_sqrt(0.5, k=2.0)
    for epoch in range(1, 20):  # the notes count epochs from 1
        assert s(epoch - 1) == pytest.approx(2.0 / math.sqrt(epoch) * 0.5)


def test_piecewise_switches_at_the_boundary():
    s = S.piecewise([3, 7], [1.0, 0.5, 0.1])
    assert [s(t) for t in range(9)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1]


def test_join_shifts_the_clock_of_later_schedules():
    warm, decay = S.linear_warmup(0.1, 4), S.exponential(0.1, 0.5)
    s = S.join([warm, decay, S.constant(0.001)], [4, 10])
    assert [s(t) for t in range(4)] == [warm(t) for t in range(4)]
    assert [s(t) for t in range(4, 10)] == [decay(t - 4) for t in range(4, 10)]
    assert s(10) == s(500) == 0.001


def _torch_rates(make_scheduler, steps, lr0):
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=lr0)
    sched = make_scheduler(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_exponential_equals_torch_exponential_lr():
    ours = [S.exponential(0.3, 0.9)(t) for t in range(60)]
    theirs = _torch_rates(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9), 60, 0.3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_step_decay_equals_torch_step_lr():
    ours = [S.step_decay(0.3, 5, 0.3)(t) for t in range(60)]
    theirs = _torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.3), 60, 0.3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_cosine_equals_torch_cosine_annealing_within_the_period():
    ours = [S.cosine(0.3, 40, 0.01)(t) for t in range(41)]
    theirs = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40, eta_min=0.01), 41, 0.3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


@pytest.mark.parametrize("make_opt", [
    lambda ps: descentlab.Adam(ps, lr=0.1), lambda ps: torch.optim.Adam(ps, lr=0.1),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: descentlab.RMSprop(ps, lr=0.1),
])
def test_adapter_sets_lr_to_schedule_of_k(make_opt):
    p = torch.nn.Parameter(torch.ones(2))
    opt = make_opt([p])
    schedule = S.join([S.linear_warmup(0.1, 3), S.inverse_time(0.1, 0.2)], [3])
    sched = S.Scheduler(opt, schedule, unit="step")
    for k in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(schedule(k), rel=1e-15)
        p.grad = torch.ones(2)
        opt.step()
        sched.step()


def test_adapter_scales_other_groups_by_their_initial_ratio_or_takes_one_schedule_each():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = descentlab.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    sched = S.Scheduler(opt, S.exponential(0.1, 0.5))
    for k in range(1, 6):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**k)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * 0.5**k)
    opt2 = descentlab.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    sched2 = S.Scheduler(opt2, [S.constant(0.2), S.step_decay(0.05, 2)])
    for k in range(1, 6):
        opt2.step()
        sched2.step()
        assert opt2.param_groups[0]["lr"] == 0.2
        assert opt2.param_groups[1]["lr"] == pytest.approx(0.05 * 0.5 ** (k // 2))


def test_adapter_updates_a_tensor_lr_in_place():
    p = torch.nn.Parameter(torch.ones(1))
    lr = torch.tensor(0.1)
    opt = torch.optim.SGD([p], lr=lr)
    sched = S.Scheduler(opt, S.exponential(0.1, 0.5))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.05)


def test_resumed_joined_schedule_continues_exactly(tmp_path):
    schedule = S.join([S.linear_warmup(0.1, 5), S.cosine(0.1, 20), S.constant(0.002)], [5, 25])

    def run(stop_at=None, resume_from=None):
        p = torch.nn.Parameter(torch.ones(1))
        opt = descentlab.Adam([p], lr=0.1)
        sched = S.Scheduler(opt, schedule, unit="epoch")
        start = 0
        if resume_from is not None:
            state = torch.load(resume_from, weights_only=False)
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start = state["k"]
        rates = []
        for k in range(start, 40):
            if k == stop_at:
                torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "k": k}, tmp_path / "ck.pt")
                return rates
            rates.append(opt.param_groups[0]["lr"])
            p.grad = torch.ones(1)
            opt.step()
            sched.step()
        return rates

    full = run()
    first = run(stop_at=13)
    second = run(resume_from=tmp_path / "ck.pt")
    assert first + second == full


def test_set_lr_is_the_manual_decay():
    p = torch.nn.Parameter(torch.ones(1))
    opt = descentlab.SGD([{"params": [p]}, {"params": [torch.nn.Parameter(torch.ones(1))]}], lr=0.1)
    S.set_lr(opt, 0.05)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05]
    S.set_lr(opt, [0.01, 0.02])
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.02]
    with pytest.raises(ValueError, match="one per param group"):
        S.set_lr(opt, [0.1])
    assert S.ReduceLROnPlateau is torch.optim.lr_scheduler.ReduceLROnPlateau


@pytest.mark.parametrize("build,fragment", [
    (lambda: S.constant(-0.1), "lr0"),
    (lambda: S.inverse_time(0.1, -1), "decay_rate"),
    (lambda: S.exponential(0.1, gamma=1.5), "gamma"),
    (lambda: S.exponential(0.1, gamma=0.0), "gamma"),
    (lambda: S.inverse_sqrt(0.1, k=0), "k"),
    (lambda: S.step_decay(0.1, 0), "step_size"),
    (lambda: S.step_decay(0.1, -3), "step_size"),
    (lambda: S.step_decay(0.1, 2.5), "step_size"),
    (lambda: S.step_decay(0.1, 2, factor=0), "factor"),
    (lambda: S.piecewise([5, 3], [1, 2, 3]), "boundaries"),
    (lambda: S.piecewise([3, 5], [1, 2]), "boundaries"),
    (lambda: S.piecewise([3], [1, -2]), "values[1]"),
    (lambda: S.join([S.constant(1), S.constant(2)], [4, 2]), "boundaries"),
    (lambda: S.join([S.constant(1), 3], [4]), "schedules[1]"),
    (lambda: S.linear_warmup(0.1, 0), "warmup"),
    (lambda: S.cosine(0.1, 10, min_lr=0.2), "min_lr"),
    (lambda: S.constant(float("nan")), "lr0"),
])
def test_bad_inputs_name_the_argument(build, fragment):
    with pytest.raises(ValueError) as info:
        build()
    assert fragment in str(info.value)


def test_bad_clock_and_unit():
    with pytest.raises(ValueError, match="t must be an integer >= 0"):
        S.constant(0.1)(-1)
    p = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="unit must be one of 'epoch', 'step'"):
        S.Scheduler(torch.optim.SGD([p], lr=0.1), S.constant(0.1), unit="batch")
    opt = torch.optim.SGD([p], lr=0.1)
    epoch_sched = S.Scheduler(opt, S.constant(0.1), unit="epoch")
    step_sched = S.Scheduler(copy.deepcopy(opt), S.constant(0.1), unit="step")
    with pytest.raises(ValueError, match="counts 'epoch's"):
        step_sched.load_state_dict(epoch_sched.state_dict())


def test_resume_with_several_groups_keeps_their_ratio(tmp_path):
    schedule = S.join([S.linear_warmup(0.2, 3), S.step_decay(0.2, 4)], [3])

    def build():
        a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
        opt = torch.optim.SGD([{"params": [a], "lr": 0.2}, {"params": [b], "lr": 0.05}], momentum=0.9)
        return opt, S.Scheduler(opt, schedule, unit="step")

    opt, sched = build()
    rates = []
    for k in range(20):
        if k == 9:
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "ck.pt")
        rates.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    opt2, sched2 = build()
    state = torch.load(tmp_path / "ck.pt", weights_only=False)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    resumed = []
    for k in range(9, 20):
        resumed.append([g["lr"] for g in opt2.param_groups])
        opt2.step()
        sched2.step()
    assert resumed == rates[9:]
    for k, (lr_a, lr_b) in enumerate(rates):
        assert lr_a == pytest.approx(schedule(k), rel=1e-15) and lr_b == pytest.approx(schedule(k) / 4, rel=1e-15)


def test_adapter_bad_inputs_name_the_argument():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    zero_first = torch.optim.SGD([{"params": [a], "lr": 0.0}, {"params": [b], "lr": 0.1}])
    with pytest.raises(ValueError, match="group 0's initial lr"):
        S.Scheduler(zero_first, S.constant(0.1))
    S.Scheduler(zero_first, [S.constant(0.0), S.constant(0.1)])  # one schedule per group is fine
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer"):
        S.Scheduler([a], S.constant(0.1))
    with pytest.raises(ValueError, match="one per param group"):
        S.Scheduler(zero_first, [S.constant(0.1)])
    with pytest.raises(ValueError, match="callable"):
        S.Scheduler(zero_first, 0.1)
