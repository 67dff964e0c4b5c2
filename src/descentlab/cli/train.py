"""``descentlab train DATASET --model M --optimizer O … --out DIR``: batch, stochastic or mini-batch
gradient descent on a real dataset, with history, curves, metrics and exact resume; ``--nproc N`` trains
data-parallel in N processes on this machine (gloo), rank 0 writing the outputs."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from descentlab.cli._args import MAX_EPOCHS, batch_sizes, folder, integer, nproc_count, number, seed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model on a dataset with one optimizer")
    p.add_argument("dataset", help="dataset name (see `descentlab datasets`)")
    p.add_argument("--model", help="linear | logistic | mlp | cnn1d | quadratic (default: by task)")
    p.add_argument("--optimizer", default="sgd", help="registry name (see `descentlab optimizers`)")
    p.add_argument("--lr", type=number(0), help="learning rate, a finite number >= 0 (default: the registry's; "
                                                "0.5 for sgd comparing batch modes on a classification set)")
    p.add_argument("--opt", help="optimizer options, e.g. momentum=0.9,nesterov=true (tuples as 0.9/0.999)")
    p.add_argument("--batch-size", default="full",
                   help="full | 1 | N | auto, or a comma list (full,1,64) to train and overlay the modes")
    p.add_argument("--epochs", type=integer(1, MAX_EPOCHS), default=20, help=f"1..{MAX_EPOCHS} (default 20)")
    p.add_argument("--schedule", help="NAME:ARG=VAL,… e.g. exponential:gamma=0.9 (lr0 defaults to --lr)")
    p.add_argument("--schedule-unit", choices=("epoch", "step"), default="epoch")
    seed(p)
    p.add_argument("--checkpoint-every", type=integer(1, 10**9),
                   help="also checkpoint every N steps, 1..1e9 (default: epoch ends)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--force", action="store_true", help="replace the outputs of an earlier run in --out")
    p.add_argument("--nproc", default="1",
                   help="data-parallel processes on this machine (gloo; each takes its share of every batch; "
                        "default 1; at most the machine's cores unless --oversubscribe)")
    p.add_argument("--oversubscribe", action="store_true", help="allow --nproc up to 8 x the cores")
    p.add_argument("--timeout", type=number(0, low_open=True),
                   help="with --nproc > 1: seconds a rank waits for the others before the job stops (default 300)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=folder, help="output folder")
    p.set_defaults(func=run, needs=("matplotlib",))


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets
    from descentlab.lab.options import check_name, parse_pairs
    from descentlab.lab.train_modes import modes_lr
    from descentlab.lab.train_run import Setting, build
    from descentlab.optim.registry import get_spec

    # everything is checked before the output folder is touched
    check_name("dataset", args.dataset, datasets.names())
    get_spec(args.optimizer)
    nproc = nproc_count(args.nproc, args.oversubscribe)
    if args.timeout is not None and nproc == 1:
        raise ValueError("--timeout applies to --nproc > 1 only (it bounds how long a process waits for the others); "
                         "drop it or give --nproc N with N >= 2")
    sizes = batch_sizes(args.batch_size)
    if len(set(map(str, sizes))) != len(sizes):
        raise ValueError(f"--batch-size lists a mode twice: {args.batch_size!r}")
    setting = Setting(args.dataset, args.model, args.optimizer, args.lr, {}, "full", args.epochs, args.schedule,
                      args.schedule_unit, args.seed)
    data = setting.load()
    setting.model_name(data)  # an unknown --model stops here
    for size in sizes:
        if isinstance(size, int) and size > len(data.train[0]):
            raise ValueError(f"--batch-size {size} is larger than the training set ({len(data.train[0])} samples)")
        if isinstance(size, int) and size < nproc:
            raise ValueError(f"--batch-size {size} is smaller than --nproc {nproc}: every process needs a "
                             f"share of each batch; use --batch-size >= {nproc} or --nproc <= {size}")
    setting.options = parse_pairs(args.opt, "--opt")
    if args.lr is None:
        setting.lr = modes_lr(args.optimizer, data.task, sizes)
    build(setting, data)  # bad --opt / --schedule stop here, before any folder or process
    if setting.lr is not None and args.lr is None:
        print(f"lr: {setting.lr:g} (no --lr: the batch-mode comparison's default for sgd, the gd-modes lesson's "
              "rate, at which mini-batch GD reaches a lower cost than batch GD in the same epochs)")
    out = Path(args.out)
    try:
        _locked(out, setting, sizes, data, nproc, args)
    except _Failed as failed:
        return failed.code
    return 0


def _locked(out: Path, setting: Any, sizes: list[Any], data: Any, nproc: int, args: argparse.Namespace) -> None:
    from descentlab.lab.train_modes import ours, prepare_out
    from descentlab.lab.train_run import check_resume
    from descentlab.outputs import folder_lock, staged

    with folder_lock(out, "descentlab train"):
        replacing = prepare_out(out, args.resume, args.force)
        if args.resume:
            for size in sizes:  # a changed option or unreadable checkpoints stop here, before anything is written
                check_resume(out if len(sizes) == 1 else out / f"batch-{size}", replace(setting, batch_size=size),
                             data)
        failure = None
        with staged(out, ours, last=("metrics.json",)) if replacing else nullcontext(out) as target:
            failure = _train(Path(target), setting, sizes, data, nproc, args)
            if failure is not None:
                raise failure  # a failed run is not swapped in


def _train(target: Path, setting: Any, sizes: list[Any], data: Any, nproc: int, args: argparse.Namespace):
    from descentlab.lab.train_modes import train_in_processes, train_modes

    run_options = {"data": data, "checkpoint_every": args.checkpoint_every, "resume": args.resume,
                   "progress": not args.quiet}
    if nproc == 1:
        shown = str(Path(args.out))  # a staged run reports the folder it replaces, not its staging folder
        train_modes(target, setting, sizes, **run_options, log=lambda text: print(text.replace(str(target), shown)))
        return None
    from descentlab.distributed import DEFAULT_TIMEOUT, RankFailure
    from descentlab.lab.train_modes import resume_hint

    def started(pids: list[int]) -> None:
        ranks = ", ".join(f"rank {r} pid {pid}" for r, pid in enumerate(pids))
        print(f"training on {len(pids)} processes (gloo): {ranks}", flush=True)

    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    try:
        train_in_processes(target, setting, sizes, nproc=nproc, timeout=timeout, on_start=started, **run_options)
    except RankFailure as err:
        print(f"descentlab train: error: {err}.", file=sys.stderr)
        timed_out = "timed out" in str(err).lower()
        if timed_out:
            print(f"A process waited more than --timeout {timeout:g} s for the others: one hung or was too slow "
                  "(raise --timeout if it was only slow).", file=sys.stderr)
        if target != Path(args.out):
            print(f"The earlier run in {args.out} was left as it was; run the same command again to replace it.",
                  file=sys.stderr)
        elif err.died or timed_out:
            print(resume_hint(target, args.resume, nproc), file=sys.stderr)
        return _Failed(1)
    return None


class _Failed(Exception):
    """A multi-process run that failed (its error already printed): the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
