"""benchmarks/step_speed.py runs (one small layout, one repeat) and prints its table: the script that makes
docs/benchmarks.md's figures must not rot between measurements. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "step_speed.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, str(SCRIPT), "--layouts", "c", "--repeats", "2", "--gather", "python",
                           *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_step_speed_prints_a_row_per_optimizer_against_its_roof():
    result = _run("--optimizers", "sgd,nadam", "--roof", "copy")
    assert result.returncode == 0, result.stderr
    assert "| layout | optimizer | descentlab ms | best torch ms (mode) | speed-up | dl GB/s | copy GB/s |" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| c (2000×1,000) |")]
    assert [row.split("|")[2].strip() for row in rows] == ["sgd", "nadam"]
    assert "(foreach)" in rows[1] or "(for-loop)" in rows[1]  # torch has no fused NAdam
    ops = [line.split("|") for line in result.stdout.splitlines() if line.startswith(("| sgd | ", "| nadam | "))]
    assert [(row[1].strip(), row[2].strip()) for row in ops] == [("sgd", "1"), ("sgd", "100"), ("sgd", "2,000"),
                                                                  ("nadam", "1"), ("nadam", "100"), ("nadam", "2,000")]
    assert all(int(row[4]) <= int(row[6]) for row in ops)  # descentlab foreach ≤ torch foreach


@pytest.mark.slow
def test_step_speed_times_lion_and_schedule_free_against_their_packages():
    """Rows whose competitor is not torch.optim: lion-pytorch's one mode, schedulefree's foreach / loop modes, and
    Adafactor (no C kernel) on matrices with impl=auto, against torch's two modes."""
    pytest.importorskip("lion_pytorch")
    pytest.importorskip("schedulefree")
    result = _run("--optimizers", "lion,schedulefree-adamw,schedulefree-sgd,adafactor")
    assert result.returncode == 0, result.stderr
    assert "impl=auto for rows without a C kernel: adafactor" in result.stdout
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| c (2000×1,000) |")]
    assert [row[2].strip() for row in rows] == ["lion", "schedulefree-adamw", "schedulefree-sgd", "adafactor"]
    modes = [row[4].strip().split("(")[1].rstrip(")") for row in rows]
    assert modes[0] == "lion-pytorch"
    assert all(mode in ("schedulefree foreach", "schedulefree loop") for mode in modes[1:3])
    assert modes[3] in ("foreach", "for-loop")
    ops = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| lion | ")]
    assert [row[2].strip() for row in ops] == ["1", "100", "2,000"]
    assert [row[3].strip() for row in ops] == ["2", "2", "2"]  # the C path: one kernel call whatever the count
    assert all(row[7].strip() == "—" for row in ops)  # lion-pytorch has no fused mode


def test_step_speed_names_what_it_does_not_know():
    result = _run("--optimizers", "no-such-optimizer")
    assert result.returncode != 0 and "unknown layout/optimizer 'no-such-optimizer'" in result.stderr
