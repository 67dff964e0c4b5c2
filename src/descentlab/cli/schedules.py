"""``descentlab schedules --out DIR``: draw the decay schedules and the EMA pictures of the notes."""

from __future__ import annotations

import argparse
from pathlib import Path

from descentlab.cli._args import MAX_EPOCHS, folder, integer, number


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("schedules", help="draw every learning-rate schedule (and the EMA pictures)")
    p.add_argument("--out", required=True, type=folder, help="output folder (created; existing files need --force)")
    p.add_argument("--epochs", type=integer(1, MAX_EPOCHS), default=50,
                   help=f"epochs on the x axis, 1..{MAX_EPOCHS} (default 50)")
    p.add_argument("--lr", type=number(0, low_open=True), default=0.1,
                   help="η₀ of every schedule, a finite number > 0 (default 0.1)")
    p.add_argument("--force", action="store_true", help="overwrite existing pictures")
    p.set_defaults(func=run, needs=("matplotlib",))


def run(args: argparse.Namespace) -> int:
    from descentlab.outputs import check_outputs
    from descentlab.pictures import default_schedules, schedules_figure, temperature_ema_figure

    from descentlab.outputs import folder_lock, staged

    out = Path(args.out)
    names = ["schedules.png", "ema.png"]
    with folder_lock(out, "descentlab schedules"):
        check_outputs(out, names, args.force, "pictures")
        with staged(out, lambda p: p.name in names) as stage:
            schedules_figure(stage / names[0], default_schedules(args.lr), args.epochs)
            temperature_ema_figure(stage / names[1])
    for name in names:
        print(f"wrote {out / name}")
    return 0
