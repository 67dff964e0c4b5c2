"""The learning-rate range test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab import datasets, models
from descentlab.cli import main
from descentlab.lab.lr_find import lr_find
from descentlab.optim.registry import get_spec


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
    assert 1e-4 < r.suggestion < 1.0 and "steepest descent" in r.rule
    i = r.lrs.index(r.suggestion)
    assert r.smoothed[i] < r.smoothed[0]  # the suggested rate sits where the loss is already falling


def test_smoothing_is_the_bias_corrected_ema():
    from descentlab.averaging import ema

    r = _run("sgd", steps=30, end_lr=1.0)
    assert r.smoothed == pytest.approx(ema(r.losses, 0.98))


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
