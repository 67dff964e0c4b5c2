"""descentlab optimizers on PyTorch's own distributed engine: DDP, ZeroRedundancyOptimizer, FSDP2.

Nothing here changes an optimizer: descentlab's classes are ordinary ``torch.optim.Optimizer`` subclasses,
so ``DistributedDataParallel`` (all-reduced gradients), ``ZeroRedundancyOptimizer(optimizer_class=…)``
(sharded state) and FSDP2's ``fully_shard`` (DTensor parameters) drive them unchanged. This module holds the
launcher used by the tests and a small data-parallel training check.

Data-parallel training from the command line uses torchrun, e.g.::

    torchrun --nproc-per-node 2 -m descentlab.distributed --optimizer adam --mode ddp --out /tmp/ddp
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

MODES = ("ddp", "zero", "fsdp")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(fn: Callable[..., Any], nproc: int, *args: Any) -> None:
    """Run ``fn(rank, world_size, port, *args)`` in ``nproc`` spawned processes (gloo on CPU)."""
    import torch.multiprocessing as mp

    mp.spawn(fn, args=(nproc, free_port(), *args), nprocs=nproc, join=True)


@contextlib.contextmanager
def process_group(rank: int, world_size: int, port: int):
    """Join a gloo process group on 127.0.0.1:``port`` for the block (one CPU thread per rank)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        yield
    finally:
        dist.destroy_process_group()


def toy_problem(seed: int = 0, n: int = 32) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP and a regression batch, identical in every process."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 8, generator=gen), torch.randn(n, 2, generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    return model, x, y


def single_process_run(optimizer: str, steps: int, lr: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """The reference: the same model trained on the whole global batch in one process."""
    from descentlab.optim.registry import get_spec

    model, x, y = toy_problem(seed)
    opt = get_spec(optimizer).build(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def data_parallel_run(rank: int, world_size: int, port: int, optimizer: str, mode: str, steps: int, lr: float,
                      out: str) -> None:
    """One rank of a data-parallel run; rank 0 saves the full final weights to ``out/final.pt``."""
    from descentlab.optim.registry import get_spec

    with process_group(rank, world_size, port):
        model, x, y = toy_problem()
        shard = slice(rank * len(x) // world_size, (rank + 1) * len(x) // world_size)
        spec = get_spec(optimizer)
        if mode == "ddp":
            net = torch.nn.parallel.DistributedDataParallel(model)
            opt = spec.build(net.parameters(), lr=lr)
        elif mode == "zero":
            from torch.distributed.optim import ZeroRedundancyOptimizer

            net = torch.nn.parallel.DistributedDataParallel(model)
            opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=spec.cls, **{**spec.defaults, "lr": lr})
        elif mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            net = fully_shard(model)
            opt = spec.build(net.parameters(), lr=lr)
        else:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x[shard]), y[shard]).backward()
            opt.step()
        if mode == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            state = {k.removeprefix("module."): v.detach().clone() for k, v in net.state_dict().items()}
        if rank == 0:
            torch.save(state, Path(out) / "final.pt")
        dist.barrier()


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: ``torchrun --nproc-per-node N -m descentlab.distributed …``."""
    parser = argparse.ArgumentParser(prog="python -m descentlab.distributed")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--mode", choices=MODES, default="ddp")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    data_parallel_run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["MASTER_PORT"]),
                      args.optimizer, args.mode, args.steps, args.lr, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def fsdp_checkpoint_run(rank: int, world_size: int, port: int, optimizer: str, steps_before: int, steps_after: int,
                        lr: float, out: str) -> None:
    """FSDP2 + a descentlab optimizer: train, save the sharded model and optimizer state with
    ``torch.distributed.checkpoint``, build everything afresh, load, train on; rank 0 saves the final weights."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                         set_state_dict)
    from torch.distributed.fsdp import fully_shard

    from descentlab.optim.registry import get_spec

    with process_group(rank, world_size, port):
        _, x, y = toy_problem()
        shard = slice(rank * len(x) // world_size, (rank + 1) * len(x) // world_size)

        def build():
            model = fully_shard(toy_problem()[0])
            return model, get_spec(optimizer).build(model.parameters(), lr=lr)

        def train(model, opt, steps):
            for _ in range(steps):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x[shard]), y[shard]).backward()
                opt.step()

        model, opt = build()
        train(model, opt, steps_before)
        model_state, optim_state = get_state_dict(model, opt)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(Path(out) / "dcp"))
        del model, opt
        model, opt = build()
        model_state, optim_state = get_state_dict(model, opt)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=str(Path(out) / "dcp"))
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        train(model, opt, steps_after)
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(full, Path(out) / "final.pt")
        dist.barrier()
