"""descentlab optimizers under PyTorch's distributed engine, with real processes (gloo on CPU, 2 ranks):
DDP, ZeroRedundancyOptimizer and FSDP2 each equal a single-process run on the same global batch, and FSDP2's
sharded optimizer state saves and loads through torch.distributed.checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from descentlab.distributed import (data_parallel_run, free_port, fsdp_checkpoint_run, launch,
                                    single_process_run)

pytestmark = [pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with the gloo backend is not available in this build"),
              pytest.mark.slow]  # 2-rank process groups: the fast lane (-m "not slow") leaves them to the full run


def _close(a: dict, b: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert set(a) == set(b)
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("mode,optimizer", [("ddp", "adam"), ("ddp", "rmsprop"), ("zero", "nadam"),
                                            ("fsdp", "nesterov")])
def test_data_parallel_equals_single_process(tmp_path, mode, optimizer):
    launch(data_parallel_run, 2, optimizer, mode, 5, 0.05, str(tmp_path))
    _close(torch.load(tmp_path / "final.pt"), single_process_run(optimizer, 5, 0.05))


def test_fsdp2_optimizer_state_round_trips_through_dcp(tmp_path):
    launch(fsdp_checkpoint_run, 2, "adam", 3, 3, 0.05, str(tmp_path))
    assert any((tmp_path / "dcp").iterdir())  # the sharded checkpoint really was written
    _close(torch.load(tmp_path / "final.pt"), single_process_run("adam", 6, 0.05))


def test_torchrun_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                           "-m", "descentlab.distributed", "--optimizer", "adamw", "--mode", "ddp",
                           "--steps", "4", "--lr", "0.02", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    _close(torch.load(tmp_path / "final.pt"), single_process_run("adamw", 4, 0.02))
