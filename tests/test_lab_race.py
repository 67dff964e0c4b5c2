"""The lecture's claims, measured on races of the real optimizers; batched tuning equals separate runs."""

from __future__ import annotations

import numpy as np
import pytest

from descentlab.lab.landscapes import get_landscape
from descentlab.lab.race import RACE_OFFERS, _run_batch, race
from descentlab.optim.registry import REGISTRY
from optimizer_cases import skip_unmet


def _y_oscillation(points: np.ndarray, skip: int = 5) -> float:
    """Cross-valley oscillation: mean |Δy| between successive steps after the first few."""
    return float(np.abs(np.diff(points[skip:, 1])).mean())


def test_momentum_oscillates_less_across_the_ravine_than_sgd_at_the_same_rate():
    r = race("ravine", ["sgd", "momentum"], steps=150, lr={"sgd": 0.45, "momentum": 0.45},
             options={"momentum": {"form": "sum", "beta": 0.5}})
    sgd, momentum = r.racers
    assert _y_oscillation(momentum.points) < 0.5 * _y_oscillation(sgd.points)
    ys = sgd.points[5:40, 1]
    assert (np.sign(ys[1:]) != np.sign(ys[:-1])).mean() > 0.9  # SGD zig-zags: y flips sign every step


def test_adagrad_effective_step_shrinks():
    r = race("bowl", ["adagrad"], steps=200, lr={"adagrad": 0.5})
    step = np.linalg.norm(np.diff(r.racers[0].points, axis=0), axis=1)
    assert step[150:].mean() < 0.2 * step[:20].mean()


def test_adaptive_methods_leave_the_saddle_faster_than_sgd():
    r = race("saddle", ["sgd", "rmsprop", "adam"], steps=400, start=(-1.5, 1e-3),
             lr={"sgd": 0.01, "rmsprop": 0.01, "adam": 0.01})
    sgd, rmsprop, adam = (x.escaped_at for x in r.racers)
    assert None not in (sgd, rmsprop, adam) and rmsprop < sgd and adam < sgd, (sgd, rmsprop, adam)
    assert not any(x.diverged for x in r.racers)  # escaping is not diverging: the saddle has bottoms


def test_tuned_adam_and_nesterov_reach_the_rosenbrock_minimum():
    r = race("rosenbrock", ["adam", "nesterov"], steps=1500, tune=True)
    for racer in r.tuned:
        assert racer.distance < 0.05, (racer.name, racer.lr, racer.distance)  # within 0.05 of (1, 1) in 1500 steps


def test_himmelblau_starts_decide_the_minimum():
    reached = set()
    for start in [(0.0, 0.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)]:
        r = race("himmelblau", ["adam"], steps=800, start=start, lr={"adam": 0.05})
        racer = r.racers[0]
        assert racer.distance < 1e-3
        reached.add(racer.nearest_minimum)
    assert len(reached) >= 3


@pytest.mark.parametrize("name", list(REGISTRY))
def test_batched_grid_equals_separate_runs(name):
    skip_unmet(name)  # the race steps one 2-vector per racer with dense gradients and no closure
    ls = get_landscape("rosenbrock")
    rates = [1e-4, 1e-3, 1e-2, 0.1]
    opts = {"weight_decay": 0.0} if name == "adamw" else {}  # the batched path needs a step linear in the rate
    # a class that declares its step not linear in the rate (the schedule-free pair) must get separate runs from
    # the race's own choice (batched=None), which this then checks
    linear = getattr(REGISTRY[name].cls, "step_is_linear_in_lr", True)
    batched = _run_batch(ls, name, opts, rates, ls.start, 120, 0.0, 0, None, None, 10.0,
                         batched=True if linear else None)
    separate = _run_batch(ls, name, opts, rates, ls.start, 120, 0.0, 0, None, None, 10.0, batched=False)
    for (pa, va, da), (pb, vb, db) in zip(batched, separate):
        assert da == db and pa.shape == pb.shape
        np.testing.assert_allclose(pa, pb, rtol=1e-9, atol=1e-9)


def test_weight_decay_falls_back_to_one_group_per_rate():
    ls = get_landscape("bowl")
    auto = _run_batch(ls, "adamw", {}, [0.01, 0.1], ls.start, 50, 0.0, 0, None, None, 10.0)  # decays by default
    separate = _run_batch(ls, "adamw", {}, [0.01, 0.1], ls.start, 50, 0.0, 0, None, None, 10.0, batched=False)
    for (pa, _, _), (pb, _, _) in zip(auto, separate):
        assert np.array_equal(pa, pb)


def test_divergence_is_detected_and_no_clipping_by_default():
    r = race("rosenbrock", ["sgd"], steps=50, lr={"sgd": 0.01})
    assert r.racers[0].diverged and len(r.racers[0].points) < 51
    clipped = race("rosenbrock", ["sgd"], steps=50, lr={"sgd": 0.01}, clip=1.0)
    assert not clipped.racers[0].diverged


def test_noise_is_seeded():
    a = race("bowl", ["sgd"], steps=30, noise=0.5, seed=3).racers[0].points
    b = race("bowl", ["sgd"], steps=30, noise=0.5, seed=3).racers[0].points
    c = race("bowl", ["sgd"], steps=30, noise=0.5, seed=4).racers[0].points
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs,fragment", [({"optimizers": ["adma"]}, "Did you mean 'adam'"),
                                             ({"steps": 0}, "steps"), ({"noise": -1}, "noise"),
                                             ({"lr": {"adam": 0.1}, "optimizers": ["sgd"]}, "not in the race"),
                                             ({"start": (1.0, float("nan"))}, "start")])
def test_bad_inputs(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        race("bowl", **{"optimizers": ["sgd"], **kwargs})


@pytest.mark.parametrize("name", [name for name, spec in REGISTRY.items() if spec.unmet(RACE_OFFERS)])
def test_rows_whose_contract_a_landscape_cannot_meet_are_refused_with_the_reason(name):
    with pytest.raises(ValueError, match=rf"'{name}' cannot race on a landscape \(a racer is one \(x, y\) vector "
                                         rf"with dense gradients\): {name} "):
        race("ravine", ["sgd", name], steps=5)


def test_only_matrix_and_sparse_rows_are_refused():
    assert sorted(n for n, spec in REGISTRY.items() if spec.unmet(RACE_OFFERS)) == ["muon", "sparseadam"]


def _lbfgs_by_hand(landscape, start, steps, **options):
    """L-BFGS on a landscape as a torch user steps it: the points after each step and the closure calls so far."""
    import torch

    import descentlab

    x = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = descentlab.LBFGS([x], **options)
    calls = [0]

    def closure():
        opt.zero_grad()
        loss = landscape(x)
        loss.backward()
        calls[0] += 1
        return loss

    points, counts = [x.detach().clone().numpy()], [0]
    for _ in range(steps):
        opt.step(closure)
        points.append(x.detach().clone().numpy())
        counts.append(calls[0])
    assert opt.state[x]["func_evals"] == calls[0]
    return np.array(points), np.array(counts)


@pytest.mark.parametrize("landscape", ["bowl", "ravine"])
def test_lbfgs_races_through_a_closure_to_the_minimum_and_counts_its_evaluations(landscape):
    r = race(landscape, ["lbfgs", "adam"], steps=20)
    lbfgs, adam = r.racers
    assert not lbfgs.diverged and lbfgs.distance < 1e-5 and lbfgs.steps_to_tol is not None, lbfgs.row()
    assert lbfgs.final_f < 1e-10
    # the path is one point per outer step, the same as stepping descentlab.LBFGS by hand with a closure
    points, counts = _lbfgs_by_hand(r.landscape, r.start, 20)
    np.testing.assert_array_equal(lbfgs.points, points)
    np.testing.assert_array_equal(lbfgs.evaluations_at, counts)
    # one outer step evaluated f and ∇f several times: the count is reported, a gradient method's is its steps
    assert lbfgs.evaluations == counts[-1] > len(lbfgs.points) - 1
    assert lbfgs.evaluations_to_tol == counts[lbfgs.steps_to_tol] > lbfgs.steps_to_tol
    assert adam.evaluations == len(adam.points) - 1 == 20 and adam.evaluations_to_tol is None
    row = lbfgs.row()
    assert row["evaluations"] == lbfgs.evaluations and row["evaluations_to_tol"] == lbfgs.evaluations_to_tol


def test_lbfgs_race_options_schedules_and_table_notes():
    from descentlab.lab.race_outputs import format_table

    r = race("rosenbrock", ["lbfgs", "lbfgs@wolfe"], steps=30, options={"lbfgs@wolfe": {
        "line_search_fn": "strong_wolfe", "max_iter": 5}})
    plain, wolfe = r.racers
    points, counts = _lbfgs_by_hand(r.landscape, r.start, 30, line_search_fn="strong_wolfe", max_iter=5)
    np.testing.assert_array_equal(wolfe.points, points)
    assert wolfe.distance < 1e-3, wolfe.row()
    table = format_table(r)
    assert "f, ∇f evaluations" in table
    assert ("note: lbfgs@wolfe: one step is up to max_iter = 5 L-BFGS iterations, up to max_eval = 6 evaluations of f "
            f"and ∇f (a gradient method makes one per step); {wolfe.evaluations} in 30 steps") in table
    assert "note: lbfgs: one step is up to max_iter = 20 L-BFGS iterations, up to max_eval = 25" in table
    halved = race("bowl", ["lbfgs"], steps=3, schedules={"lbfgs": lambda t: 0.5}).racers[0]
    full = race("bowl", ["lbfgs"], steps=3, lr={"lbfgs": 0.5}).racers[0]
    np.testing.assert_array_equal(halved.points, full.points)
