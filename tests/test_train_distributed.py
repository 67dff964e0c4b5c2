"""Data-parallel training with real processes (gloo, 2 ranks on CPU).

``fit(distributed=True)`` equals a single process on the same global batches (equal and unequal shares, a
rank with no share of the last batch, full batch); ``descentlab train --nproc 2`` writes what a single run
writes; the death of rank 1 (SIGKILL) stops the job with a clear error, leaves every checkpoint loadable and
no process behind, and ``--resume`` ends bit-identical to an uninterrupted 2-rank run; a hung rank is bounded
by the collective timeout."""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from descentlab import datasets, models
from descentlab.cli import main
from descentlab.distributed import RankFailure, run_ranks
from descentlab.optim.registry import get_spec
from descentlab.train import TASK_LOSS, fit, list_checkpoints

pytestmark = [pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with the gloo backend is not available in this build"),
              pytest.mark.slow]  # 2-rank process groups: the fast lane (-m "not slow") leaves them to the full run

# name: dataset, model, optimizer, lr, global batch, epochs. Shares of each batch between the 2 ranks:
CASES = {
    "diabetes-momentum-32": ("diabetes", "linear", "momentum", 0.02, 32, 4),  # 16/16; last batch of 9: 4/5
    "diabetes-adam-33": ("diabetes", "linear", "adam", 0.5, 33, 3),  # 16/17; last batch of 1: rank 0 gets none
    "digits-adam-51": ("digits", "mlp", "adam", 0.003, 51, 2),  # 25/26 in every batch
    "digits-rmsprop-full": ("digits", "logistic", "rmsprop", 0.01, "full", 5),  # 539/539
}
# The 2-rank gradient is the share-weighted mean of the ranks' mean gradients, the single-process one the mean
# over the whole batch: the same sum in another order, so float32 weights agree up to rounding. Measured
# (torch 2.13, CPU): max|Δw| / max|w| ≤ 3.2e-7 per tensor, per-step losses within 2.6e-7 relative.
RTOL = 1e-6


@pytest.fixture(autouse=True)
def one_thread():
    """The in-process runs use one thread, like each rank (and are not slowed by a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _relative_difference(a: dict, b: dict) -> float:
    """The largest max|a − b| / max|b| over the tensors of two state dicts (same keys)."""
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in b)


def _train(name: str, distributed: bool, checkpoint_dir: Path):
    dataset, model_name, optimizer, lr, batch, epochs = CASES[name]
    data = datasets.load(dataset, seed=0)
    model = models.build(model_name, data.n_features, data.n_outputs, seed=0)
    opt = get_spec(optimizer).build(model.parameters(), lr=lr)
    history = fit(model, data.train, opt, loss=TASK_LOSS[data.task], epochs=epochs, batch_size=batch, seed=3,
                  val=data.val, checkpoint_dir=checkpoint_dir, checkpoint_every=5, progress=False,
                  distributed=distributed)
    return model, history


def _fit_cases(rank: int, world_size: int, out: str) -> None:
    """One rank: train every case data-parallel; count the checkpoints this rank writes."""
    fit_module = importlib.import_module("descentlab.train.fit")  # the module (descentlab.train.fit is fit)
    saves = []
    original = fit_module.save_checkpoint
    fit_module.save_checkpoint = lambda *args, **kw: saves.append(args[1]) or original(*args, **kw)
    for name in CASES:
        model, history = _train(name, True, Path(out) / name)
        torch.save({"model": model.state_dict(), "losses": [r["loss"] for r in history.steps],
                    "epochs": history.epochs}, Path(out) / f"{name}-rank-{rank}.pt")
    (Path(out) / f"saves-rank-{rank}.txt").write_text(str(len(saves)))


def test_two_rank_fit_equals_one_process(tmp_path):
    run_ranks(_fit_cases, 2, str(tmp_path), timeout=60)
    assert int((tmp_path / "saves-rank-1.txt").read_text()) == 0  # only rank 0 writes checkpoints
    assert int((tmp_path / "saves-rank-0.txt").read_text()) > 0
    worst = {}
    for name in CASES:
        model, history = _train(name, False, tmp_path / "single" / name)
        got, other = (torch.load(tmp_path / f"{name}-rank-{rank}.pt") for rank in (0, 1))
        for key, value in got["model"].items():  # DDP keeps the ranks' weights bit-identical
            assert torch.equal(other["model"][key], value), f"{name}: rank 1's {key} differs from rank 0's"
        untimed = [[{k: v for k, v in row.items() if "seconds" not in k} for row in r["epochs"]] for r in (got, other)]
        assert other["losses"] == got["losses"] and untimed[0] == untimed[1]  # the same History on every rank
        worst[name] = _relative_difference(got["model"], model.state_dict())
        assert worst[name] <= RTOL, f"{name}: weights differ by {worst[name]:.2e} of their magnitude"
        np.testing.assert_allclose(got["losses"], [r["loss"] for r in history.steps], rtol=RTOL)
        assert [r["steps"] for r in got["epochs"]] == [r["steps"] for r in history.epochs]
        assert ([p.name for p in list_checkpoints(tmp_path / name)]
                == [p.name for p in list_checkpoints(tmp_path / "single" / name)])
    print("max|Δw| / max|w|, 2 ranks vs 1 process:", {k: f"{v:.1e}" for k, v in worst.items()})


def _train_for(name: str, epochs: int, distributed: bool, checkpoint_dir: Path) -> torch.nn.Module:
    dataset, model_name, optimizer, lr, batch, _ = CASES[name]
    data = datasets.load(dataset, seed=0)
    model = models.build(model_name, data.n_features, data.n_outputs, seed=0)
    opt = get_spec(optimizer).build(model.parameters(), lr=lr)
    fit(model, data.train, opt, loss=TASK_LOSS[data.task], epochs=epochs, batch_size=batch, seed=3,
        checkpoint_dir=checkpoint_dir, checkpoint_every=5, progress=False, distributed=distributed)
    return model


def _resume_on_two_ranks(rank: int, world_size: int, out: str) -> None:
    """Continue a single process's checkpoints on 2 ranks; start 2-rank checkpoints for a single process."""
    model = _train_for("digits-adam-51", 2, True, Path(out) / "from-one")
    if rank == 0:
        torch.save(model.state_dict(), Path(out) / "one-then-two.pt")
    _train_for("digits-adam-51", 1, True, Path(out) / "from-two")


def test_a_run_resumes_on_another_number_of_processes(tmp_path):
    """Checkpoints carry no rank count: a run begun in one process continues on 2 ranks and one begun on 2 ranks
    continues in one process, ending where an uninterrupted single run ends (up to the same rounding as any
    2-rank run: the gradient's sum is taken in another order)."""
    _train_for("digits-adam-51", 1, False, tmp_path / "from-one")
    run_ranks(_resume_on_two_ranks, 2, str(tmp_path), timeout=60)
    two_then_one = _train_for("digits-adam-51", 2, False, tmp_path / "from-two").state_dict()
    straight = _train_for("digits-adam-51", 2, False, tmp_path / "straight").state_dict()
    one_then_two = torch.load(tmp_path / "one-then-two.pt")
    print("max|Δw| / max|w| vs an uninterrupted run: 1 → 2 processes "
          f"{_relative_difference(one_then_two, straight):.1e}, 2 → 1 {_relative_difference(two_then_one, straight):.1e}")
    assert _relative_difference(one_then_two, straight) <= RTOL
    assert _relative_difference(two_then_one, straight) <= RTOL
    assert 0 < _relative_difference(one_then_two, straight) or 0 < _relative_difference(two_then_one, straight), \
        "no step ran on 2 ranks: the test did not resume anything"
    steps = [int(p.stem.split("-")[1]) for p in list_checkpoints(tmp_path / "from-two")]
    assert steps and max(steps) == 2 * 22  # 1078 samples in batches of 51: 22 steps an epoch


def test_distributed_fit_needs_a_process_group():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="process group"):
        fit(model, (torch.zeros(4, 2), torch.zeros(4, 1)), torch.optim.SGD(model.parameters(), lr=0.1),
            loss="mse", epochs=1, progress=False, distributed=True)
    with pytest.raises(ValueError, match="distributed must be True or False"):
        fit(model, (torch.zeros(4, 2), torch.zeros(4, 1)), torch.optim.SGD(model.parameters(), lr=0.1),
            loss="mse", epochs=1, progress=False, distributed="yes")


def _hang(rank: int, world_size: int) -> None:
    x = torch.ones(1)
    dist.all_reduce(x)
    if rank == 1:
        time.sleep(600)  # hangs instead of dying
    dist.all_reduce(x)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_hung_rank_is_bounded_by_the_timeout():
    pids: list[int] = []
    with pytest.raises(RankFailure) as info:
        run_ranks(_hang, 2, timeout=2, grace=0.5, on_start=pids.extend)
    err = info.value
    assert err.rank == 0 and not err.died and "Timed out" in err.error
    assert "terminated, as still running: rank 1" in str(err)
    assert len(pids) == 2 and not any(_running(pid) for pid in pids)


# --- the command line ------------------------------------------------------------------------------------

CLI_RUN = ["train", "digits", "--model", "mlp", "--optimizer", "nesterov", "--lr", "0.05", "--batch-size", "32",
           "--epochs", "8", "--checkpoint-every", "10", "--quiet"]
EPOCHS, STEPS = 8, 8 * 34  # 1078 training samples in batches of 32


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(path)))


def _final(out: Path) -> dict:
    return torch.load(list_checkpoints(out / "checkpoints")[-1], weights_only=False)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    """An uninterrupted ``--nproc 2`` run, shared by the tests below."""
    out = tmp_path_factory.mktemp("cli") / "two-ranks"
    assert main(CLI_RUN + ["--nproc", "2", "--timeout", "30", "--out", str(out)]) == 0
    return out


def test_cli_nproc_2_writes_what_a_single_run_writes(two_rank_run, tmp_path):
    one = tmp_path / "one"
    assert main(CLI_RUN + ["--out", str(one)]) == 0
    assert sorted(p.name for p in two_rank_run.iterdir()) == sorted(p.name for p in one.iterdir())
    assert ([p.name for p in list_checkpoints(two_rank_run / "checkpoints")]
            == [p.name for p in list_checkpoints(one / "checkpoints")])
    # counts, rates and accuracies are equal; losses and weights equal up to float32 rounding (measured: per-step
    # losses 1.4e-6 relative — the smallest losses of the run; epoch losses 2e-7; weights 3.3e-7 of max|w|)
    for name in ("history.csv", "epochs.csv"):
        a, b = _rows(two_rank_run / name), _rows(one / name)
        assert len(a) == len(b) == (STEPS if name == "history.csv" else EPOCHS) and a[0].keys() == b[0].keys()
        for column in a[0]:
            x, y = [float(r[column]) for r in a], [float(r[column]) for r in b]
            if "loss" in column:
                np.testing.assert_allclose(x, y, rtol=1e-5, err_msg=f"{name}: {column}")
            elif "seconds" not in column:  # wall times (seconds, epoch_seconds) differ between runs
                assert x == y, f"{name}: {column}"
    m2, m1 = (json.loads((d / "metrics.json").read_text()) for d in (two_rank_run, one))
    assert m2.keys() == m1.keys() and m2["steps"] == m1["steps"] == STEPS and m2["epochs"] == EPOCHS
    for key in m1:
        if "loss" in key:
            assert m2[key] == pytest.approx(m1[key], rel=1e-6), key
        elif "seconds" not in key:  # wall times differ between runs
            assert m2[key] == m1[key], key
    image = np.asarray(Image.open(two_rank_run / "curves.png").convert("L"), dtype=float)
    assert image.shape[0] > 200 and image.std() > 5
    assert _relative_difference(_final(two_rank_run)["model"], _final(one)["model"]) <= 1e-6


def test_death_of_one_rank_stops_the_job_and_resume_is_exact(two_rank_run, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    job = subprocess.Popen([sys.executable, "-m", "descentlab", *CLI_RUN, "--nproc", "2", "--timeout", "10",
                            "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        started = job.stdout.readline()  # "training on 2 processes (gloo): rank 0 pid …, rank 1 pid …"
        pids = {int(rank): int(pid) for rank, pid in re.findall(r"rank (\d+) pid (\d+)", started)}
        assert sorted(pids) == [0, 1], started
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:  # kill once step 40 is checkpointed
            steps = [int(p.stem.split("-")[1]) for p in list_checkpoints(out / "checkpoints")]
            if steps and max(steps) >= 40:
                break
            time.sleep(0.005)
        assert job.poll() is None, "the job ended before rank 1 could be killed"
        os.kill(pids[1], signal.SIGKILL)
        killed = time.monotonic()
        code = job.wait(timeout=60)  # the job stops: no hang
        stopped_after = time.monotonic() - killed
        stderr = job.stderr.read()
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert code == 1, stderr
    assert "rank 1 of 2" in stderr and "died: killed by signal SIGKILL" in stderr, stderr
    assert "--resume" in stderr and str(out / "checkpoints") in stderr, stderr
    assert not any(_running(pid) for pid in pids.values()), "a rank was left running"
    assert not (out / "metrics.json").exists()  # it stopped mid-training
    checkpoints = list_checkpoints(out / "checkpoints")
    assert checkpoints and int(checkpoints[-1].stem.split("-")[1]) < STEPS
    for path in checkpoints:  # every file under a checkpoint's name loads
        torch.load(path, weights_only=False)
    print(f"the job stopped {stopped_after:.1f} s after rank 1 was killed; "
          f"resuming from {checkpoints[-1].name}")

    assert main(CLI_RUN + ["--nproc", "2", "--timeout", "30", "--resume", "--out", str(out)]) == 0
    want, got = _final(two_rank_run), _final(out)
    assert want["step"] == got["step"] == STEPS
    for key in want["model"]:
        assert torch.equal(got["model"][key], want["model"][key]), f"{key} differs after the resume"
    for index, state in want["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(got["optimizer"]["state"][index][key]), torch.as_tensor(value)), key
    for a, b in zip(_rows(out / "history.csv"), _rows(two_rank_run / "history.csv"), strict=True):
        assert (a["step"], a["loss"], a["lr"]) == (b["step"], b["loss"], b["lr"])
