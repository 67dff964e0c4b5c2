"""Issue 18, ``descentlab train`` under attack — every case a real ``descentlab`` process, as a user (or an
attacker with write access to a run folder) would drive it: planted pickles, ``--force`` that fails, resumes
with another setting, two processes on one folder, unreadable and tampered checkpoints, divergence, a full
disk, temporary files of dead writers."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from descentlab.train.checkpoint import list_checkpoints, read_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def cli(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``descentlab ARGS`` in its own process."""
    return subprocess.run([sys.executable, "-m", "descentlab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_line_error(done: subprocess.CompletedProcess, verb: str = "train") -> str:
    """The single ``descentlab VERB: error: …`` line of a run that exited 2 without a traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"descentlab {verb}: error: "), done.stderr
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (name → bytes), the lock and staging excluded."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".descentlab")}


IRIS = ["train", "iris", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory) -> Path:
    """A finished 2-epoch SGD run on iris (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("iris") / "run"
    done = cli(*IRIS, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


class Planted:
    """A pickle that runs a shell command when unpickled (what ``weights_only=False`` would execute)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# 1 ------------------------------------------------------------------------------------------------------
def test_resume_never_runs_code_planted_in_the_checkpoints(iris_run, tmp_path):
    out = copy_of(iris_run, tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"format": 2, "payload": Planted(marker)}, out / "checkpoints" / "checkpoint-999999999.pt")
    done = cli("train", "iris", "--epochs", "3", "--quiet", "--resume", "--out", out)
    assert not marker.exists(), "a planted pickle ran"
    assert done.returncode == 0, done.stderr  # resumed from the newest checkpoint that loads safely ...
    assert "checkpoint-999999999.pt" in done.stderr and "weights_only" in done.stderr  # ... naming the one refused
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
    for path in list_checkpoints(out / "checkpoints")[:-1]:  # everything descentlab writes loads with weights_only
        torch.load(path, weights_only=True)
    # nothing else to resume from: refused, named, still nothing run
    for path in list_checkpoints(out / "checkpoints")[:-1]:
        path.unlink()
    line = one_line_error(cli("train", "iris", "--epochs", "4", "--quiet", "--resume", "--out", out))
    assert "no checkpoint" in line and "checkpoint-999999999.pt" in line and not marker.exists()


# 2 ------------------------------------------------------------------------------------------------------
def test_force_validates_first_and_replaces_only_after_success(iris_run, tmp_path):
    out = copy_of(iris_run, tmp_path)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    line = one_line_error(cli(*IRIS, "--force", "--schedule", "cosine:bogus=1", "--out", out))
    assert "--schedule" in line and snapshot(out) == before
    one_line_error(cli(*IRIS, "--force", "--opt", "bogus=1", "--out", out))
    assert snapshot(out) == before
    # a forced run that fails while training (it diverges) leaves the earlier run as it was
    line = one_line_error(cli("train", "diabetes", "--lr", "100", "--epochs", "50", "--quiet", "--force",
                              "--out", out))
    assert "diverged" in line and snapshot(out) == before and not list(out.glob(".descentlab-*"))
    # a forced run that succeeds replaces descentlab's outputs, and only those
    assert cli(*IRIS, "--force", "--optimizer", "adam", "--out", out).returncode == 0
    assert json.loads((out / "metrics.json").read_text())["optimizer"] == "adam"
    assert (out / "notes.txt").read_text() == "mine" and not list(out.glob(".descentlab-*"))


# 3 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,flag,old,new", [
    (["--optimizer", "adam", "--lr", "0.5"], "--optimizer", "sgd", "adam"),
    (["--lr", "0.5"], "--lr", "0.01", "0.5"),
    (["--opt", "momentum=0.9"], "--opt", "(none)", "momentum=0.9"),
    (["--schedule", "exponential:gamma=0.9"], "--schedule", "(none)", "exponential:gamma=0.9"),
    (["--model", "mlp"], "--model", "logistic", "mlp"),
])
def test_resume_refuses_another_setting_naming_the_option_and_both_values(iris_run, tmp_path, change, flag, old,
                                                                          new):
    out = copy_of(iris_run, tmp_path)
    before = snapshot(out)
    line = one_line_error(cli("train", "iris", "--epochs", "4", "--quiet", "--resume", *change, "--out", out))
    assert f"{flag} differs" in line and f"it was {old}" in line and f"gives {new}" in line
    assert snapshot(out) == before


# 4 ------------------------------------------------------------------------------------------------------
def test_one_process_per_output_folder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "descentlab", "train", "digits", "--model", "mlp", "--epochs",
                              "100000", "--quiet", "--out", str(out)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(out / "checkpoints") and time.monotonic() < deadline:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        for extra in ([], ["--force"], ["--resume"]):
            line = one_line_error(cli("train", "digits", "--model", "mlp", "--epochs", "2", "--quiet", *extra,
                                      "--out", out))
            assert "in use by another descentlab process" in line and f"pid {first.pid}" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (out / ".descentlab.lock").exists()  # left behind by the killed holder: stale
    done = cli("train", "digits", "--model", "mlp", "--epochs", "2", "--quiet", "--force", "--out", out)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2 and not (out / ".descentlab.lock").exists()


# 8 ------------------------------------------------------------------------------------------------------
def test_unreadable_checkpoints_never_crowd_out_new_ones(iris_run, tmp_path):
    out = copy_of(iris_run, tmp_path)
    (out / "checkpoints" / "checkpoint-999999999.pt").write_bytes(b"not a checkpoint")
    done = cli("train", "iris", "--epochs", "6", "--quiet", "--resume", "--out", out)
    assert done.returncode == 0, done.stderr
    readable = [p for p in list_checkpoints(out / "checkpoints") if p.name != "checkpoint-999999999.pt"]
    assert [read_checkpoint(p)["epoch"] for p in readable] == [4, 5, 6]  # the 3 newest of this run are kept


def test_resume_with_nothing_readable_refuses(iris_run, tmp_path):
    out = copy_of(iris_run, tmp_path)
    for path in list_checkpoints(out / "checkpoints"):
        path.write_bytes(b"\0" * 64)
    before = snapshot(out)
    line = one_line_error(cli("train", "iris", "--epochs", "3", "--quiet", "--resume", "--out", out))
    assert "no checkpoint" in line and "nothing to resume from" in line and snapshot(out) == before


# 10 -----------------------------------------------------------------------------------------------------
def test_divergence_is_one_line_with_history_and_the_last_finite_state_kept(tmp_path):
    out = tmp_path / "run"
    line = one_line_error(cli("train", "diabetes", "--optimizer", "sgd", "--lr", "100", "--epochs", "50", "--quiet",
                              "--out", out))
    assert "training diverged" in line and "step" in line and ("inf" in line or "nan" in line)
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) >= 2 and (out / "epochs.csv").exists()
    found = list_checkpoints(out / "checkpoints")
    if found:  # the newest checkpoint is a finite state, and it is the one the message names
        last = read_checkpoint(found[-1])
        assert all(torch.isfinite(v).all() for v in last["model"].values())
        assert all(math.isfinite(r["train_loss"]) for r in last["history"]["epochs"])
        assert found[-1].name in line


# 18 (the checkpoint half) ---------------------------------------------------------------------------------
def _tamper(out: Path, change) -> Path:
    path = list_checkpoints(out / "checkpoints")[-1]
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change,fragment", [
    (lambda p: p.update(batch=999), "batch = 999"),
    (lambda p: p.update(epoch=-5), "epoch = -5 is negative"),
    (lambda p: p["optimizer"]["param_groups"][0].update(lr=-1.0), "lr must be in [0, inf), got -1"),
    (lambda p: p["optimizer"]["param_groups"][0].update(momentum=2.0), "momentum must be in"),
    (lambda p: p.pop("history"), "has no 'history'"),
])
def test_a_tampered_checkpoint_is_refused_by_name(iris_run, tmp_path, change, fragment):
    out = copy_of(iris_run, tmp_path)
    path = _tamper(out, change)
    line = one_line_error(cli("train", "iris", "--epochs", "3", "--quiet", "--resume", "--out", out))
    assert fragment in line and path.name in line


def test_a_negative_step_in_the_optimizer_state_is_refused(tmp_path):
    out = tmp_path / "run"
    assert cli(*IRIS, "--optimizer", "adam", "--out", out).returncode == 0

    def negative(payload):
        for entry in payload["optimizer"]["state"].values():
            entry["step"] = torch.tensor(-5.0)

    _tamper(out, negative)
    line = one_line_error(cli("train", "iris", "--epochs", "3", "--optimizer", "adam", "--quiet", "--resume",
                              "--out", out))
    assert "'step'" in line and "must be a finite number >= 0" in line


# 12 / 16: a full disk ----------------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_leaves_no_temporaries(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=160k none {disk} && {sys.executable} -m descentlab train digits --model "
              f"mlp --epochs 20 --quiet --out {disk}/run")
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare (user and mount namespaces) to mount a small tmpfs")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=160k none {disk} && echo ok"], capture_output=True, text=True)
    if probe.stdout.strip() != "ok":
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    script += f"; code=$?; ls -a {disk}/run {disk}/run/checkpoints > {tmp_path}/listing 2>&1; exit $code"
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=300)
    line = one_line_error(done)
    assert "no space left on" in line and "while writing" in line
    listing = (tmp_path / "listing").read_text().split()
    assert not [name for name in listing if ".tmp" in name], listing


# 17 -------------------------------------------------------------------------------------------------------------
def test_an_empty_out_is_refused_and_nothing_is_written_here(tmp_path):
    line = one_line_error(cli(*IRIS, "--out", "", cwd=tmp_path))
    assert "--out" in line and list(tmp_path.iterdir()) == []
