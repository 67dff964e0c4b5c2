"""``descentlab schedules --out DIR``: draw the decay schedules and the EMA pictures of the notes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("schedules", help="draw every learning-rate schedule (and the EMA pictures)")
    p.add_argument("--out", required=True, help="output folder (created; existing files need --force)")
    p.add_argument("--epochs", type=int, default=50, help="epochs on the x axis (default 50)")
    p.add_argument("--lr", type=float, default=0.1, help="η₀ of every schedule (default 0.1)")
    p.add_argument("--force", action="store_true", help="overwrite existing pictures")
    p.set_defaults(func=run, needs=("matplotlib",))


def run(args: argparse.Namespace) -> int:
    from descentlab.outputs import check_outputs
    from descentlab.pictures import default_schedules, schedules_figure, temperature_ema_figure

    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    out = Path(args.out)
    targets = [out / "schedules.png", out / "ema.png"]
    check_outputs(out, [p.name for p in targets], args.force, "pictures")
    out.mkdir(parents=True, exist_ok=True)
    schedules_figure(targets[0], default_schedules(args.lr), args.epochs)
    temperature_ema_figure(targets[1])
    for path in targets:
        print(f"wrote {path}")
    return 0
