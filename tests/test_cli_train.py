"""``descentlab train`` as a user runs it: outputs opened and checked, bad inputs, no silent overwrite, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from descentlab.cli import main


def _image_ok(path):
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    return image.shape[0] > 200 and image.std() > 5


def test_train_writes_history_curves_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "iris", "--optimizer", "momentum", "--lr", "0.1", "--batch-size", "16", "--epochs", "5",
                 "--schedule", "step_decay:step_size=2", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"train_loss", "val_loss", "test_loss", "test_accuracy", "epochs", "steps", "seconds"} <= set(metrics)
    assert metrics["epochs"] == 5 and metrics["steps"] == 5 * 6 and metrics["test_accuracy"] > 0.6
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 30 and float(rows[-1]["lr"]) == pytest.approx(0.1 * 0.5**2)
    assert _image_ok(out / "curves.png")
    printed = capsys.readouterr().out
    assert "test_acc" in printed and str(out) in printed


def test_three_batch_modes_are_overlaid(tmp_path):
    out = tmp_path / "modes"
    assert main(["train", "wine", "--optimizer", "sgd", "--lr", "0.05", "--batch-size", "full,1,16", "--epochs", "3",
                 "--quiet", "--out", str(out)]) == 0
    for mode in ("full", "1", "16"):
        assert json.loads((out / f"batch-{mode}" / "metrics.json").read_text())["batch_size"] == mode
    assert _image_ok(out / "batch_modes.png")


def test_optimizer_options_reach_the_optimizer(tmp_path):
    out = tmp_path / "opt"
    assert main(["train", "iris", "--optimizer", "sgd", "--opt", "momentum=0.9,nesterov=true", "--epochs", "2",
                 "--quiet", "--out", str(out)]) == 0
    import torch

    ck = sorted((out / "checkpoints").iterdir())[-1]
    group = torch.load(ck, weights_only=False)["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True


@pytest.mark.parametrize("args,fragment", [
    (["train", "irsi"], "Did you mean 'iris'"),
    (["train", "iris", "--model", "mpl"], "Did you mean 'mlp'"),
    (["train", "iris", "--optimizer", "adma"], "Did you mean 'adam'"),
    (["train", "iris", "--batch-size", "0"], "positive integer"),
    (["train", "iris", "--batch-size", "5000"], "larger than the training set"),
    (["train", "iris", "--opt", "momentum"], "KEY=VALUE"),
    (["train", "iris", "--opt", "momentum=2"], "momentum must be in"),
    (["train", "iris", "--schedule", "exp:gamma=0.9"], "unknown schedule"),
    (["train", "iris", "--nproc", "0"], "--nproc must be an integer >= 1"),
    (["train", "iris", "--nproc", "two"], "--nproc must be an integer >= 1"),
    (["train", "iris", "--nproc", "2", "--batch-size", "1"], "--batch-size 1 is smaller than --nproc 2"),
    (["train", "iris", "--nproc", "2", "--timeout", "0"], "argument --timeout: must be a finite number > 0"),
    (["train", "iris", "--nproc", "2", "--opt", "momentum=2"], "momentum must be in"),  # before any process starts
])
def test_bad_inputs_are_named(tmp_path, capsys, args, fragment):
    assert main(args + ["--out", str(tmp_path / "x"), "--quiet", "--epochs", "1"]) == 2
    assert fragment in capsys.readouterr().err


def test_existing_output_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "iris", "--epochs", "2", "--quiet", "--out", str(out)]
    assert main(base) == 0
    first = (out / "metrics.json").read_text()
    assert main(base) == 2
    assert "--resume" in capsys.readouterr().err and (out / "metrics.json").read_text() == first
    assert main(["train", "iris", "--epochs", "4", "--quiet", "--resume", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4  # continued from epoch 2
    (out / "notes.txt").write_text("mine")
    assert main(base + ["--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces only descentlab's outputs


def test_auto_batch_size_says_what_it_chose_and_why(tmp_path, capsys):
    out = tmp_path / "auto"
    assert main(["train", "iris", "--batch-size", "auto", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("batch size: auto → ")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(lines) == 1 and "full batch (" in lines[0] and "≤ 2000: the notes' rule for small sets" in lines[0]
    assert metrics["batch_size"] == "auto" and metrics["batch_size_chosen"] == "full"
    assert metrics["steps"] == 1  # one epoch of the whole set is one step
    assert "≤ 2000" in metrics["batch_size_reason"] and metrics["batch_size_rule"] in lines[0]


def test_batch_modes_at_the_default_rate_show_the_notes_lesson_and_time_fairly(tmp_path, capsys):
    import statistics

    out = tmp_path / "modes"
    assert main(["train", "digits", "--batch-size", "full,64", "--epochs", "4", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lr: 0.5 (no --lr" in printed and "warm-up excluded" in printed
    numbers = json.loads((out / "batch_modes.json").read_text())
    assert numbers["lr"] == 0.5
    full, mini = numbers["modes"]["full"], numbers["modes"]["64"]
    # the notes' lesson at the default: mini-batch GD reaches a lower cost than batch GD after every epoch
    assert all(m < f for m, f in zip(mini["cost_per_epoch"], full["cost_per_epoch"]))
    assert mini["cost_per_epoch"][-1] < 0.5 * full["cost_per_epoch"][-1]
    for mode, shown in numbers["modes"].items():
        rows = list(csv.DictReader(open(out / f"batch-{mode}" / "epochs.csv")))
        times = [float(r["epoch_seconds"]) for r in rows]
        assert shown["epochs_timed"] == 3 and shown["warmup_excluded"] is True  # the first epoch is left out
        assert shown["epoch_seconds_median"] == pytest.approx(statistics.median(times[1:]))
        assert shown["epoch_seconds_min"] == pytest.approx(min(times[1:]))
        assert shown["epoch_seconds_max"] == pytest.approx(max(times[1:]))
    assert _image_ok(out / "batch_modes.png")
    assert json.loads((out / "batch-64" / "metrics.json").read_text())["lr"] == 0.5
