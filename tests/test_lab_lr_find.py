"""The learning-rate range test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab import datasets, models
from descentlab.cli import main
from descentlab.lab.lr_find import lr_find
from descentlab.optim.registry import get_spec, optimizer_names


def _run(name, **kwargs):
    d = datasets.load("digits")
    model = models.build("mlp", 64, 10, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    result = lr_find(model, d.train, lambda params, lr: get_spec(name).build(params, lr=lr), loss="cross_entropy",
                     **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the caller's model is untouched
    return result


def test_rates_grow_exponentially_and_the_suggestion_trains_well():
    r = _run("adam", steps=100)
    ratios = np.array(r.lrs[1:]) / np.array(r.lrs[:-1])
    assert np.allclose(ratios, ratios[0]) and r.lrs[0] == 1e-6
    assert r.extra["stopped_early"]  # the loss blew up before 10: the run stopped on its own
    assert 1e-4 < r.suggestion < 1.0 and "lowest smoothed loss" in r.rule
    i = int(np.argmin(np.abs(np.log(r.lrs) - np.log(r.suggestion))))
    assert r.smoothed[i] < r.smoothed[0]  # the suggested rate sits where the loss is already falling


def test_smoothing_spans_a_fixed_share_of_the_sweep_and_does_not_lag():
    from descentlab.averaging import ema
    from descentlab.lab.lr_find import zero_lag

    for steps in (100, 500):
        r = _run("sgd", steps=steps, end_lr=1.0)
        assert r.extra["window"] == pytest.approx(steps / 25)  # was: β = 0.98 (50 steps) whatever the sweep
    ramp = np.linspace(2.0, 1.0, 1000)
    beta = 0.95  # a 20-step window: the causal EMA trails the ramp by ≈ 19 steps, the two-way one by none
    middle = slice(200, 800)
    lag = np.abs(np.asarray(ema(ramp, beta)) - ramp)[middle].mean() / 1e-3  # in steps of the ramp
    assert lag > 15 and np.abs(zero_lag(ramp, beta) - ramp)[middle].max() / 1e-3 < 0.5


SETTINGS = [("digits", "logistic", "sgd")] + [pytest.param(*s, marks=pytest.mark.slow) for s in [
    ("digits", "mlp", "adam"), ("breast_cancer", "logistic", "momentum"), ("digits", "logistic", "rmsprop")]]


@pytest.mark.parametrize("dataset,model,optimizer", SETTINGS)
def test_the_suggestion_trains_about_as_well_as_the_best_decade(dataset, model, optimizer):
    from dataclasses import replace

    from descentlab.lab.lr_find import find_lr
    from descentlab.lab.train_run import Setting, train_into

    data = datasets.load(dataset, seed=0)
    setting = Setting(dataset, model, optimizer, batch_size=64, epochs=5, seed=0)

    def accuracy(lr):
        return train_into(None, replace(setting, lr=lr), data=data).metrics["test_accuracy"]

    best = max(accuracy(lr) for lr in (1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    for steps in (100, 500):  # at 500 steps the old rule suggested 1e-6 on digits/logistic/sgd (14 % vs 96 %)
        found = find_lr(setting, data=data, steps=steps)
        assert found.suggestion > 10 * found.lrs[0]
        assert accuracy(found.suggestion) > best - 0.03, (steps, found.suggestion, best)


def test_bad_arguments():
    for kwargs, fragment in [({"start_lr": 0}, "start_lr"), ({"start_lr": 1, "end_lr": 0.1}, "start_lr"),
                             ({"steps": 3}, "steps"), ({"diverge_factor": 1.0}, "diverge_factor")]:
        with pytest.raises(ValueError, match=fragment):
            _run("sgd", **kwargs)


def test_cli_writes_plot_and_csv(tmp_path, capsys):
    out = tmp_path / "lrf"
    assert main(["lr-find", "iris", "--optimizer", "momentum", "--steps", "40", "--batch-size", "16",
                 "--out", str(out)]) == 0
    assert "suggested learning rate for momentum" in capsys.readouterr().out
    assert (out / "lr_find.png").stat().st_size > 10_000
    assert len((out / "lr_find.csv").read_text().splitlines()) > 10
    assert main(["lr-find", "iris", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


# -- every registry row runs or is refused with the reason (lbfgs, muon, sparseadam) ------------------------------

def _iris():
    d = datasets.load("iris", seed=0)
    return d, models.build("logistic", d.n_features, d.n_outputs, seed=0)


def test_lbfgs_is_refused_because_it_picks_its_own_step(tmp_path, capsys):
    import descentlab
    from descentlab.lab.lr_find import LRFindNotApplicable, lr_findable_names

    d, model = _iris()
    for make in ("lbfgs", lambda params, lr: descentlab.LBFGS(params, lr=lr),
                 lambda params, lr: torch.optim.LBFGS(params, lr=lr)):
        with pytest.raises(LRFindNotApplicable, match="picks its own step") as err:
            lr_find(model, d.train, make, loss="cross_entropy", steps=20)
        assert "line search" in err.value.reason and "lbfgs" not in err.value.works
        assert err.value.works == lr_findable_names() and "muon" in err.value.works
    out = tmp_path / "lrf"
    assert main(["lr-find", "iris", "--optimizer", "lbfgs", "--steps", "20", "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "bug" not in message
    assert "lr-find does not apply to lbfgs: it picks its own step" in message
    assert "It runs with sgd, momentum" in message and "muon" in message and "sparseadam" not in message.split(
        "It runs with")[1]
    assert not (out / "lr_find.png").exists()


def test_sparseadam_is_refused_as_train_refuses_it(tmp_path, capsys):
    from descentlab.lab.lr_find import LRFindNotApplicable

    d, model = _iris()
    with pytest.raises(LRFindNotApplicable, match="sparse gradients only") as err:
        lr_find(model, d.train, "sparseadam", loss="cross_entropy", steps=20)
    assert "sparseadam" not in err.value.works
    assert main(["lr-find", "iris", "--optimizer", "sparseadam", "--steps", "20", "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "lr-find does not apply to sparseadam: it takes sparse gradients only" in message and "bug" not in message


def test_muon_sweeps_its_rate_on_the_matrices_with_adamw_on_the_rest(tmp_path, capsys):
    from descentlab.lab.lr_find import registry_optimizer
    from descentlab.optim.muon import Muon
    from descentlab.train.partitioned import Partitioned

    d, model = _iris()
    built = []

    def make(params, lr):
        built.append(registry_optimizer("muon")(params, lr))
        return built[-1]

    r = lr_find(model, d.train, make, loss="cross_entropy", steps=40, batch_size=16)
    opt = built[0]
    assert isinstance(opt, Partitioned) and isinstance(opt.parts[0], Muon)
    assert [p.ndim for g in opt.parts[0].param_groups for p in g["params"]] == [2]
    assert [p.ndim for g in opt.parts[1].param_groups for p in g["params"]] == [1]
    muon_lr, adamw_lr = (float(g["lr"]) for g in opt.param_groups)
    assert muon_lr == r.lrs[-1] and adamw_lr == pytest.approx(r.lrs[-1] * 0.001 / 0.02, rel=1e-12)
    assert np.isfinite(r.suggestion) and min(r.smoothed) < r.smoothed[0]  # Muon's steps lower the loss
    out = tmp_path / "lrf"
    assert main(["lr-find", "iris", "--optimizer", "muon", "--steps", "40", "--batch-size", "16",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate for muon" in printed and "adamw steps the other parameters at 0.05" in printed
    assert (out / "lr_find.csv").exists()


@pytest.mark.parametrize("name", optimizer_names())
def test_every_registry_row_runs_or_is_refused_with_the_reason(name):
    from descentlab.lab.lr_find import LRFindNotApplicable, lr_find_refusal

    d, model = _iris()
    reason = lr_find_refusal(name)
    assert (reason is None) == (not get_spec(name).requires - {"matrices"})
    try:
        r = lr_find(model, d.train, name, loss="cross_entropy", steps=20, batch_size=16)
    except LRFindNotApplicable as err:
        assert reason is not None and err.reason == reason and err.name == name and name not in err.works
        return
    assert reason is None and np.isfinite(r.suggestion) and r.suggestion > 0 and len(r.lrs) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("name", optimizer_names())
def test_every_registry_row_on_the_cli_writes_its_test_or_is_one_line_refusal(name, tmp_path, capsys):
    from descentlab.lab.lr_find import lr_find_refusal

    code = main(["lr-find", "iris", "--optimizer", name, "--steps", "20", "--batch-size", "16", "--out",
                 str(tmp_path)])
    captured = capsys.readouterr()
    if lr_find_refusal(name) is None:
        assert code == 0 and f"suggested learning rate for {name}" in captured.out, captured.err
        assert (tmp_path / "lr_find.csv").exists()
    else:
        assert code == 2 and captured.err.count("\n") == 1
        assert f"lr-find does not apply to {name}: {lr_find_refusal(name)}" in captured.err
