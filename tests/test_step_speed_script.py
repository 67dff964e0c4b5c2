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


def test_step_speed_names_what_it_does_not_know():
    result = _run("--optimizers", "lion")
    assert result.returncode != 0 and "unknown layout/optimizer 'lion'" in result.stderr
