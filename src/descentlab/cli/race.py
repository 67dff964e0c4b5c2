"""``descentlab race LANDSCAPE [--optimizers a,b] [--steps N] [--start x,y] [--lr NAME=X,…] [--tune]
[--noise σ] [--seed S] --out DIR``: race optimizers on a 2-D landscape and write the report."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from descentlab.lab.race import DEFAULT_OPTIMIZERS

    p = subparsers.add_parser("race", help="race optimizers on a 2-D landscape (pictures, GIF, HTML report)")
    p.add_argument("landscape", help="see `descentlab landscapes`")
    p.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS))
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--start", help="x,y (default: the landscape's); write --start=-1,2 when x is negative")
    p.add_argument("--lr", help="NAME=X,… learning rates (default: the registry's)")
    p.add_argument("--opt", action="append", default=[], help="NAME:k=v,… options for one optimizer (repeatable)")
    p.add_argument("--tune", action="store_true", help="also race every optimizer at its best rate on a log grid")
    p.add_argument("--noise", type=float, default=0.0, help="gradient noise σ (imitates mini-batch gradients)")
    p.add_argument("--clip", type=float, help="clip gradient norms to this value (off by default)")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=40, help="animation frames (default 40)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier race in --out")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run, needs=("matplotlib",))


def run(args: argparse.Namespace) -> int:
    from descentlab.lab.options import parse_pairs
    from descentlab.lab.landscapes import get_landscape
    from descentlab.lab.race import race
    from descentlab.lab.race_outputs import check_out, format_table, write_race_outputs
    from descentlab.optim.registry import get_spec

    landscape = get_landscape(args.landscape)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    for name in names:
        get_spec(name)
    start: tuple[float, float] | None = None
    if args.start:
        try:
            xy = [float(v) for v in args.start.split(",")]
        except ValueError:
            raise ValueError(f"--start must be x,y, got {args.start!r}") from None
        if len(xy) != 2:
            raise ValueError(f"--start must be x,y, got {args.start!r}")
        start = (xy[0], xy[1])
    rates = {k: float(v) for k, v in parse_pairs(args.lr, "--lr").items()}
    options = {}
    for item in args.opt:
        name, sep, rest = item.partition(":")
        if not sep:
            raise ValueError(f"--opt must be NAME:k=v,…, got {item!r}")
        options[name] = parse_pairs(rest, "--opt")
    out = Path(args.out)
    check_out(out, args.force)
    result = race(landscape, names, steps=args.steps, start=start, lr=rates, options=options, noise=args.noise,
                  seed=args.seed, tol=args.tol, tune=args.tune, clip=args.clip)
    paths = write_race_outputs(result, out, force=args.force, frames=args.frames)
    print(format_table(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
