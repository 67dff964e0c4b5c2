"""``descentlab race LANDSCAPE [--optimizers a,b] [--steps N] [--start x,y] [--lr NAME=X,…] [--tune]
[--noise σ] [--seed S] --out DIR``: race optimizers on a 2-D landscape and write the report."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from descentlab.cli._args import MAX_STEPS, folder, integer, number, rates, seed


def register(subparsers: argparse._SubParsersAction) -> None:
    from descentlab.lab.race import DEFAULT_OPTIMIZERS

    p = subparsers.add_parser("race", help="race optimizers on a 2-D landscape (pictures, GIF, HTML report)")
    p.add_argument("landscape", help="see `descentlab landscapes`")
    p.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS))
    p.add_argument("--steps", type=integer(1, MAX_STEPS), default=500, help=f"1..{MAX_STEPS} (default 500)")
    p.add_argument("--start", help="x,y (default: the landscape's); write --start=-1,2 when x is negative")
    p.add_argument("--lr", help="NAME=X,… learning rates, each a finite number > 0 (default: the registry's)")
    p.add_argument("--opt", action="append", default=[], help="NAME:k=v,… options for one optimizer (repeatable)")
    p.add_argument("--schedule", action="append", default=[],
                   help="NAME=SCHEDULE:k=v,… a rate schedule for one racer, per step (repeatable), e.g. "
                        "sgd=exponential:gamma=0.99; lr0 defaults to its --lr or the registry's rate")
    p.add_argument("--tune", action="store_true", help="also race every optimizer at its best rate on a log grid")
    p.add_argument("--noise", type=number(0), default=0.0,
                   help="gradient noise σ, a finite number >= 0 (imitates mini-batch gradients)")
    p.add_argument("--clip", type=number(0, low_open=True), help="clip gradient norms to this value (off by default)")
    p.add_argument("--tol", type=number(0, low_open=True), default=1e-6, help="a finite number > 0 (default 1e-6)")
    seed(p)
    p.add_argument("--frames", type=integer(2, 1000), default=40, help="animation frames, 2..1000 (default 40)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier race in --out")
    p.add_argument("--out", required=True, type=folder)
    p.set_defaults(func=run, needs=("matplotlib",))


def run(args: argparse.Namespace) -> int:
    from descentlab.lab.options import parse_pairs
    from descentlab.lab.landscapes import get_landscape
    from descentlab.lab.race import race
    from descentlab.lab.race_outputs import check_out, format_table, write_race_outputs
    from descentlab.optim.registry import get_spec

    from descentlab.lab.race_outputs import half_written
    from descentlab.lab.train_run import check_optimizer
    from descentlab.outputs import folder_lock

    landscape = get_landscape(args.landscape)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--optimizers must name at least one registry optimizer, got {args.optimizers!r}")
    for name in names:
        try:
            get_spec(name.partition("@")[0])
        except ValueError as err:
            raise ValueError(f"--optimizers: {err}") from None
    if len(set(names)) != len(names):
        raise ValueError(f"--optimizers names a racer twice (race one optimizer twice as NAME and NAME@TAG): "
                         f"{args.optimizers!r}")
    start: tuple[float, float] | None = None
    if args.start:
        try:
            xy = [float(v) for v in args.start.split(",")]
        except ValueError:
            raise ValueError(f"--start must be x,y (two finite numbers), got {args.start!r}") from None
        if len(xy) != 2 or not all(math.isfinite(v) for v in xy):
            raise ValueError(f"--start must be x,y (two finite numbers), got {args.start!r}")
        start = (xy[0], xy[1])
    lrs = rates(args.lr, "--lr", names)
    options = {}
    for item in args.opt:
        name, sep, rest = item.partition(":")
        if not sep:
            raise ValueError(f"--opt must be NAME:k=v,…, got {item!r}")
        try:
            get_spec(name.partition("@")[0])
        except ValueError as err:
            raise ValueError(f"--opt {name}: {err}") from None
        if name not in names:
            raise ValueError(f"--opt {name}: {name!r} is not in the race ({', '.join(names)})")
        options[name] = parse_pairs(rest, f"--opt {name}")
        check_optimizer(name.partition("@")[0], options[name], lrs.get(name), f"--opt {name}")
    schedules = racer_schedules(args.schedule, names, lrs, args.steps)
    out = Path(args.out)
    with folder_lock(out, "descentlab race"):
        if half_written(out):
            print(f"{out} holds a race that was stopped while writing its outputs (no report.html): replacing it")
        check_out(out, args.force)
        result = race(landscape, names, steps=args.steps, start=start, lr=lrs, options=options, schedules=schedules,
                      noise=args.noise,
                      seed=args.seed, tol=args.tol, tune=args.tune, clip=args.clip)
        paths = write_race_outputs(result, out, force=True, frames=min(args.frames, args.steps + 1))
    print(format_table(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def racer_schedules(items: list[str], names: list[str], lrs: dict[str, float], steps: int) -> dict:
    """``--schedule NAME=SPEC`` items → ``{racer: t -> lr}``, each parsed by the lab's schedule parser (``lr0``
    defaults to the racer's ``--lr``, which the schedule then replaces, else the registry's rate) and checked
    over the race's steps, before anything is written."""
    import math

    from descentlab.lab.options import parse_schedule
    from descentlab.optim.registry import get_spec

    schedules = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or not name or not spec.strip():
            raise ValueError(f"--schedule must be NAME=SCHEDULE:k=v,… (e.g. sgd=exponential:gamma=0.99), got {item!r}")
        if name not in names:
            raise ValueError(f"--schedule {name}: {name!r} is not in the race ({', '.join(names)})")
        if name in schedules:
            raise ValueError(f"--schedule {name}: given twice; give each racer one schedule")
        lr0 = lrs.pop(name) if name in lrs else get_spec(name.partition("@")[0]).lr
        try:
            schedule = parse_schedule(spec.strip(), lr0)
        except ValueError as err:
            message = str(err).removeprefix("--schedule ")
            raise ValueError(f"--schedule {name}: {message}") from None
        values = [float(schedule(t)) for t in range(steps + 1)]
        if not all(math.isfinite(v) and v >= 0 for v in values) or max(values) <= 0:
            raise ValueError(f"--schedule {name}: {spec.strip()!r} must give finite rates >= 0, not all 0, over the "
                             f"race's steps 0..{steps}")
        schedules[name] = schedule
    return schedules
