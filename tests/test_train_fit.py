"""The fit loop on real data: convergence claims of the notes, exact resume after a real kill, checkpoints,
divergence handling, history outputs."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import descentlab
from descentlab import datasets, models
from descentlab.train import TrainingDiverged, evaluate, fit, list_checkpoints, load_latest_checkpoint, save_checkpoint

WORKER = Path(__file__).with_name("train_worker.py")


def _worker(ckpt, out, pause=0.0):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), str(pause)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_resume_after_kill_is_bit_identical(tmp_path):
    reference = _worker(tmp_path / "ref", tmp_path / "ref.pt")
    assert reference.wait(timeout=120) == 0, reference.stderr.read().decode()
    victim = _worker(tmp_path / "run", tmp_path / "run.pt", pause=0.004)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill -9 once it has checkpointed mid-epoch a few times
        steps = [int(p.stem.split("-")[1]) for p in list_checkpoints(tmp_path / "run")]
        if steps and max(steps) >= 80:
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL and not (tmp_path / "run.pt").exists()
    last = load_latest_checkpoint(tmp_path / "run")
    assert last is not None and last["batch"] != 0 or last["epoch"] > 0
    resumed = _worker(tmp_path / "run", tmp_path / "run.pt")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "run.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_checkpoints_are_atomic_and_the_last_n_are_kept(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"value": step}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000000004.pt", "checkpoint-000000005.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    (tmp_path / "checkpoint-000000006.pt").write_bytes(b"\x80\x02half-written")  # a corrupt newest file
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert load_latest_checkpoint(tmp_path)["value"] == 5


def test_half_written_checkpoints_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    """A process killed mid-write leaves ``.checkpoint-….pt.<pid>.tmp``; the next save removes it — but never the
    temporary file of a writer that still runs."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # that process has ended
    orphan = tmp_path / f".checkpoint-000000003.pt.{dead_pid}.tmp"
    live = tmp_path / f".checkpoint-000000003.pt.{os.getpid()}.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for path in (orphan, live, unrelated):
        path.write_bytes(b"half")
    save_checkpoint(tmp_path, 4, {"value": 4})
    assert not orphan.exists() and live.exists() and unrelated.exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000000004.pt"]


def test_batch_gd_cost_falls_every_epoch_and_sgd_falls_on_average():
    d = datasets.load("breast_cancer")
    losses = {}
    for size in ("full", 1):
        model = models.build("logistic", d.n_features, 2, seed=0)
        opt = descentlab.SGD(model.parameters(), lr=0.5 if size == "full" else 0.01)
        h = fit(model, d.train, opt, loss="cross_entropy", epochs=15, batch_size=size, progress=False)
        losses[size] = (h, [r["train_loss"] for r in h.epochs])
    full = losses["full"][1]
    assert all(b < a for a, b in zip(full, full[1:])), full
    steps = np.array([r["loss"] for r in losses[1][0].steps])
    assert (np.diff(steps) > 0).mean() > 0.2              # noisy: many single steps go up …
    first, last = steps[:200].mean(), steps[-200:].mean()  # … but the cost falls on average
    assert last < 0.5 * first


def test_diabetes_batch_gd_reaches_the_least_squares_optimum():
    d = datasets.load("diabetes")
    model = models.build("linear", d.n_features, 1, seed=0)
    opt = descentlab.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    h = fit(model, d.full, opt, loss="mse", epochs=500, batch_size="full", progress=False)
    assert h.final["train_loss"] == pytest.approx(2859.70, rel=1e-3)


def test_digits_mlp_reaches_95_percent():
    d = datasets.load("digits")
    model = models.build("mlp", 64, 10, seed=0)
    opt = descentlab.Adam(model.parameters(), lr=1e-3)
    fit(model, d.train, opt, loss="cross_entropy", epochs=30, batch_size=32, progress=False)
    assert evaluate(model, d.test, torch.nn.functional.cross_entropy, True)["accuracy"] >= 0.95


def test_step_schedule_and_history_contents(tmp_path):
    d = datasets.load("iris")
    model = models.build("logistic", 4, 3, seed=0)
    opt = descentlab.SGD(model.parameters(), lr=0.5)
    sched = descentlab.schedules.step_decay(0.5, 10)
    h = fit(model, d.train, opt, loss="cross_entropy", epochs=4, batch_size=9, schedule=sched,
            schedule_unit="step", val=d.val, accuracy=True, progress=False)
    assert [r["lr"] for r in h.steps] == [sched(k) for k in range(len(h.steps))]
    assert len(h.steps) == 40 and h.steps[-1]["samples"] == 4 * 90
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(h.final)
    ema = descentlab.ema([r["loss"] for r in h.steps], 0.98)
    assert [r["loss_ema"] for r in h.steps] == pytest.approx(ema)
    h.to_csv(tmp_path / "h.csv")
    h.to_json(tmp_path / "h.json")
    h.plot(tmp_path / "h.png")
    assert (tmp_path / "h.csv").read_text().splitlines()[0].startswith("step,epoch,loss,loss_ema,lr")
    assert (tmp_path / "h.png").stat().st_size > 10_000


def test_nonfinite_loss_stops_with_a_clear_message_or_is_skipped(tmp_path):
    d = datasets.load("diabetes")
    model = models.build("linear", d.n_features, 1, seed=0)
    opt = descentlab.SGD(model.parameters(), lr=5.0)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss .* at epoch \d+, step \d+, learning rate 5"):
        fit(model, d.train, opt, loss="mse", epochs=200, checkpoint_dir=tmp_path, progress=False)
    last = load_latest_checkpoint(tmp_path)
    assert all(torch.isfinite(v).all() for v in last["model"].values())  # the last checkpoint is a good one
    assert all(math.isfinite(r["train_loss"]) for r in last["history"]["epochs"])  # not a diverged epoch's end
    x = d.train[0].clone()
    x[3, 0] = float("nan")
    model = models.build("linear", d.n_features, 1, seed=0)
    h = fit(model, (x, d.train[1]), descentlab.SGD(model.parameters(), lr=0.05), loss="mse", epochs=2,
            batch_size=1, on_nonfinite="skip", progress=False)
    assert h.final["skipped_steps"] == 2 and all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_arguments_and_existing_checkpoints(tmp_path):
    d = datasets.load("iris")
    model = models.build("logistic", 4, 3)
    opt = descentlab.SGD(model.parameters(), lr=0.1)
    for kwargs, fragment in [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"),
                             ({"batch_size": 1000}, "larger than the dataset"), ({"schedule_unit": "batch"}, "unit"),
                             ({"on_nonfinite": "ignore"}, "on_nonfinite"), ({"loss": "hinge"}, "unknown loss")]:
        with pytest.raises(ValueError, match=fragment):
            fit(model, d.train, opt, **{"loss": "cross_entropy", "epochs": 1, **kwargs}, progress=False)
    fit(model, d.train, opt, loss="cross_entropy", epochs=1, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        fit(model, d.train, opt, loss="cross_entropy", epochs=1, checkpoint_dir=tmp_path, resume=False, progress=False)
    with pytest.raises(ValueError, match="was made with"):
        fit(model, d.train, opt, loss="cross_entropy", epochs=2, batch_size=5, checkpoint_dir=tmp_path, progress=False)
