"""``descentlab compare DATASET --model M …``: tune every optimizer fairly, re-run with seeds, report."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare optimizers on a dataset with fair tuning (Optuna)")
    p.add_argument("dataset")
    p.add_argument("--model", help="default: by task")
    p.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", default="10", help="per trial and per run: EPOCHS (e.g. 10) or SECONDS (e.g. 30s)")
    p.add_argument("--tune", default="lr", help="comma list of lr, batch_size, schedule (default lr)")
    p.add_argument("--trials", type=int, default=10, help="tuning trials per optimizer (the study keeps growing "
                   "to this many when re-run)")
    p.add_argument("--target", help="METRIC=VALUE, e.g. val_accuracy=0.95 or val_loss=0.1")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite study.db in --out), e.g. postgresql://…")
    p.add_argument("--workers", type=int, default=1, help="parallel tuning processes on this machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run, needs=("matplotlib", "optuna"))


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets
    from descentlab.lab.compare import CompareConfig, compare
    from descentlab.lab.options import check_name
    from descentlab.lab.train_run import DEFAULT_MODEL
    from descentlab.outputs import check_empty

    check_name("dataset", args.dataset, datasets.names())
    target = None
    if args.target:
        metric, sep, value = args.target.partition("=")
        if not sep:
            raise ValueError(f"--target must be METRIC=VALUE, got {args.target!r}")
        try:
            target = (metric, float(value))
        except ValueError:
            raise ValueError(f"--target value must be a number, got {value!r}") from None
    budget = args.budget.strip().lower()
    try:
        epochs, seconds = (10, float(budget[:-1])) if budget.endswith("s") else (int(budget), None)
    except ValueError:
        raise ValueError(f"--budget must be EPOCHS (an integer) or SECONDS ending in s (e.g. 30s), got {args.budget!r}") from None
    out = Path(args.out)
    check_empty(out, hint="it holds no earlier comparison; choose another --out",
                unless=lambda o: (o / "summary.json").exists() or (o / "study.db").exists())
    task = datasets.load(args.dataset).task
    config = CompareConfig(args.dataset, args.model or DEFAULT_MODEL[task],
                           [o.strip() for o in args.optimizers.split(",") if o.strip()], str(out), seeds=args.seeds,
                           epochs=epochs, seconds=seconds, tune=tuple(t.strip() for t in args.tune.split(",")),
                           trials=args.trials, target=target, batch_size=args.batch_size, storage=args.storage,
                           workers=args.workers, seed=args.seed)
    result = compare(config)
    print(f"{'optimizer':<10} {'best lr':>9} {'metric':>14} {'mean':>8} {'std':>7} {'target':>7} {'steps':>7}")
    for s in result.summary():
        steps = "-" if s["median_steps_to_target"] is None else f"{s['median_steps_to_target']:.0f}"
        print(f"{s['optimizer']:<10} {s['best_lr']:>9.3g} {s['metric']:>14} {s['mean']:>8.4f} {s['std']:>7.4f} "
              f"{s['reached_target']:>3}/{s['seeds']:<3} {steps:>7}")
    print(f"wrote {out / 'report.html'} (trials.csv, runs.csv, summary.json, curves.png, profile.png)")
    return 0
