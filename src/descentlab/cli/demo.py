"""``descentlab demo [--out DIR]``: the main job — races on the ravine, the saddle and Rosenbrock, and a short
real-data comparison, in one folder with an index page. Without ``--out`` every run gets a new folder
``descentlab-demo/run-YYYYmmdd-HHMMSS``, so nothing earlier is ever overwritten."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from descentlab.cli._args import MAX_STEPS, folder, integer


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the main job: optimizer races and a real-data comparison, one folder")
    p.add_argument("--out", type=folder, help="output folder (default: a new descentlab-demo/run-<time> folder)")
    p.add_argument("--steps", type=integer(10, MAX_STEPS), default=500, help=f"steps per race, 10..{MAX_STEPS} "
                   "(default 500)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.set_defaults(func=run, needs=("matplotlib", "sklearn"))


def run(args: argparse.Namespace) -> int:
    from descentlab.lab.demo import run_demo
    from descentlab.outputs import check_empty

    from descentlab.outputs import folder_lock

    if args.out:
        out = Path(args.out)
    else:
        out = Path("descentlab-demo") / time.strftime("run-%Y%m%d-%H%M%S")
        while out.exists():
            out = out.with_name(out.name + "-1")
    started = time.perf_counter()
    with folder_lock(out, "descentlab demo"):
        check_empty(out, args.force)
        index = run_demo(out, steps=args.steps)
    print(f"\ndemo written to {out.resolve()} in {time.perf_counter() - started:.0f} s; open {index.resolve()}")
    return 0
