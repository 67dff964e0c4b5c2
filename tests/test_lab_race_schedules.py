"""Schedules in races give the rates themselves (a callable t -> lr), including ones that start at 0."""

from __future__ import annotations

import numpy as np
import pytest

from descentlab.lab.race import race
from descentlab.schedules import constant, linear_warmup


def test_a_schedule_gives_the_rate():
    r = race("bowl", ["sgd"], steps=3, schedules={"sgd": constant(0.3)})
    first = r.racers[0].points[1]
    np.testing.assert_allclose(first, np.array([-4.0, 3.0]) * (1 - 0.3 * 2))  # w − 0.3 ∇f, ∇f = 2w
    assert r.racers[0].lr == pytest.approx(0.3) and "scheduled" in r.racers[0].label


def test_a_warmup_from_zero_runs_and_follows_the_schedule():
    s = linear_warmup(0.1, 5, start_factor=0.0)
    r = race("bowl", ["sgd"], steps=8, schedules={"sgd": s}, tune=True, grid=(0.05, 0.2))
    pts = r.racers[0].points
    np.testing.assert_allclose(pts[1], pts[0])  # rate 0 at t = 0
    np.testing.assert_allclose(pts[2], pts[1] * (1 - 2 * s(1)))
    tuned = r.tuned[0]
    assert tuned.lr in (0.05, 0.2) and tuned.scheduled  # the grid scales the schedule's peak


def test_rate_and_schedule_together_are_refused():
    with pytest.raises(ValueError, match="both a learning rate and a schedule"):
        race("bowl", ["sgd"], lr={"sgd": 0.1}, schedules={"sgd": constant(0.3)})
    with pytest.raises(ValueError, match="not all 0"):
        race("bowl", ["sgd"], schedules={"sgd": constant(0.0)})
