"""Training through ``step(closure)`` (L-BFGS) and with a partitioned optimizer (Muon on the weight matrices,
AdamW on the rest): real models on real data, exact resume, counted evaluations."""

from __future__ import annotations

import pytest
import torch

import descentlab
from descentlab import datasets, models
from descentlab.lab.train_run import Setting, build, train_into
from descentlab.train import fit
from descentlab.train.closure import needs_closure
from descentlab.train.partitioned import Partitioned, split_matrices


def _iris_model(seed=0, name="logistic"):
    data = datasets.load("iris", seed=0)
    return data, models.build(name, data.n_features, data.n_outputs, seed=seed)


def test_lbfgs_trains_through_a_closure_and_counts_its_evaluations():
    data, model = _iris_model()
    opt = descentlab.LBFGS(model.parameters(), line_search_fn="strong_wolfe", max_iter=5)
    assert needs_closure(opt) and needs_closure(torch.optim.LBFGS([torch.zeros(1, requires_grad=True)]))
    assert not needs_closure(descentlab.Adam(model.parameters()))
    before = fit(model, data.train, descentlab.SGD(model.parameters(), lr=0.0), loss="cross_entropy", epochs=1,
                 progress=False).final["train_loss"]
    history = fit(model, data.train, opt, loss="cross_entropy", epochs=3, progress=False)  # full batch
    rows = history.epochs
    assert rows[-1]["train_loss"] < 0.5 * before, (before, rows[-1]["train_loss"])
    # each epoch's row holds the closure evaluations so far: several per step, and what L-BFGS itself counted
    assert [r["evaluations"] for r in rows] == sorted(r["evaluations"] for r in rows)
    assert rows[-1]["evaluations"] == opt.state[opt.param_groups[0]["params"][0]]["func_evals"]
    assert rows[-1]["evaluations"] > rows[-1]["steps"]


def test_lbfgs_resumes_exactly_with_its_evaluation_count(tmp_path):
    def run(epochs, folder):
        data, model = _iris_model()
        opt = descentlab.LBFGS(model.parameters(), lr=0.3, max_iter=4)
        history = fit(model, data.train, opt, loss="cross_entropy", epochs=epochs, batch_size=50, progress=False,
                      checkpoint_dir=folder)
        return model, history

    whole, h_whole = run(4, tmp_path / "whole")
    run(2, tmp_path / "part")
    resumed, h_resumed = run(4, tmp_path / "part")
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
    assert [r["evaluations"] for r in h_resumed.epochs] == [r["evaluations"] for r in h_whole.epochs]


def test_a_non_finite_first_loss_stops_before_lbfgs_moves_anything():
    data, model = _iris_model()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    opt = descentlab.LBFGS(model.parameters())
    with pytest.raises(descentlab.train.TrainingDiverged, match="non-finite loss"):
        fit(model, data.train, opt, loss="cross_entropy", epochs=1, progress=False)
    assert opt.state[opt.param_groups[0]["params"][0]] == {"func_evals": 0, "n_iter": 0}  # no step ran


def test_muon_steps_the_weight_matrices_and_adamw_the_rest():
    data, model = _iris_model(name="mlp")
    built = build(Setting("iris", "mlp", "muon", lr=0.04), data)
    opt = built.optimizer
    assert isinstance(opt, Partitioned) and [type(p).__name__ for p in opt.parts] == ["Muon", "AdamW"]
    muon, adamw = opt.parts
    params = dict(built.model.named_parameters())
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {id(p) for p in params.values() if p.ndim == 2}
    assert {id(p) for g in adamw.param_groups for p in g["params"]} == {id(p) for p in params.values() if p.ndim != 2}
    assert adamw.param_groups[0]["lr"] == pytest.approx(0.001 * 0.04 / 0.02)  # AdamW's rate, scaled as Muon's
    assert opt.param_groups == muon.param_groups + adamw.param_groups
    setting = Setting("iris", "mlp", "muon", epochs=5, batch_size=16)
    untrained = descentlab.train.evaluate(build(setting, data).model, data.test, torch.nn.functional.cross_entropy,
                                          accuracy=True)
    run = train_into(None, setting, data=data)
    assert run.metrics["test_loss"] < 0.5 * untrained["loss"], (untrained, run.metrics)
    assert run.metrics["test_accuracy"] > untrained["accuracy"] + 0.3, (untrained, run.metrics)


def test_partitioned_resumes_exactly_and_refuses_a_foreign_state(tmp_path):
    def run(epochs, folder):
        data, model = _iris_model(name="mlp")
        opt = split_matrices("muon", model, 0.02, {})
        fit(model, data.train, opt, loss="cross_entropy", epochs=epochs, batch_size=40, progress=False,
            checkpoint_dir=folder, schedule=lambda t: 0.02 * 0.5**t)
        return model, opt

    whole, _ = run(3, tmp_path / "whole")
    run(1, tmp_path / "part")
    resumed, opt = run(3, tmp_path / "part")
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
    assert opt.parts[1].param_groups[0]["lr"] == pytest.approx(0.001 * 0.25)  # the schedule keeps the ratio
    with pytest.raises(ValueError, match=r"Partitioned.load_state_dict: expected \{'parts': \[2 optimizer states\]\}"):
        opt.load_state_dict(opt.parts[0].state_dict())


def test_muon_refuses_a_model_without_matrices():
    model = torch.nn.Sequential()
    model.register_parameter("scale", torch.nn.Parameter(torch.ones(3)))
    with pytest.raises(ValueError, match=r"muon steps 2-D parameters only, and Sequential has none .*\(3,\)"):
        split_matrices("muon", model, 0.02, {})
