"""Crash safety: a training process killed with SIGKILL at random moments, many times — mid-step and
mid-checkpoint-write included — always resumes from its last complete checkpoint, never leaves a corrupt
checkpoint, and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from descentlab.train import list_checkpoints

WORKER = Path(__file__).with_name("train_worker.py")


def _start(ckpt: Path, out: Path, pause: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), str(pause)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_many_random_kills_then_exact_finish(tmp_path):
    reference = _start(tmp_path / "ref", tmp_path / "ref.pt", 0.0)
    assert reference.wait(timeout=180) == 0, reference.stderr.read()
    rng = random.Random(20261123)
    ckpt, out = tmp_path / "run", tmp_path / "run.pt"
    kills = 0
    done = 0  # the highest step any run has reported
    for _ in range(5):
        proc = _start(ckpt, out, pause=0.001)
        target = done + rng.randint(3, 40)  # kill a few steps past the last run's progress…
        for line in proc.stdout:  # …counted in steps, not seconds, so a fast machine cannot outrun it
            done = max(done, int(line))
            if done >= target:
                time.sleep(rng.uniform(0.0, 0.003))  # …at a random moment: mid-step or mid-checkpoint-write
                break
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        for path in list_checkpoints(ckpt):  # every checkpoint that carries a checkpoint's name loads
            torch.load(path, weights_only=False)
        if out.exists():
            break
    assert kills >= 2, "the run finished before it could be killed twice: the kill targets outran the run"
    final = _start(ckpt, out, pause=0.0)
    assert final.wait(timeout=180) == 0, final.stderr.read()
    assert not list(ckpt.glob(".*.tmp")), "a half-written checkpoint of a killed run was left behind"
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(out)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after {kills} kills and resumes"
