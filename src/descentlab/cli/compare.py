"""``descentlab compare DATASET --model M …``: tune every optimizer fairly, re-run with seeds, report."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from descentlab.cli._args import MAX_EPOCHS, folder, integer, seed

DEFAULT_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare optimizers on a dataset with fair tuning (Optuna)")
    p.add_argument("dataset")
    p.add_argument("--model", help="default: by task")
    p.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS)
    p.add_argument("--seeds", type=integer(1, 100), default=3, help="re-runs of the best setting, 1..100 (default 3)")
    p.add_argument("--budget", default="10", help=f"per trial and per run: EPOCHS (1..{MAX_EPOCHS}, e.g. 10) or "
                   "SECONDS (a finite number > 0 and <= 86400 ending in s, e.g. 30s)")
    p.add_argument("--tune", default="lr", help="comma list of lr, batch_size, schedule (default lr)")
    p.add_argument("--trials", type=integer(0, 10_000), default=10, help="tuning trials per optimizer (the study keeps growing "
                   "to this many when re-run)")
    p.add_argument("--target", help="METRIC=VALUE, e.g. val_accuracy=0.95 or val_loss=0.1")
    p.add_argument("--batch-size", type=integer(1, 1_000_000), default=64)
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite study.db in --out), e.g. postgresql://…")
    p.add_argument("--workers", type=integer(1, 64), default=1, help="parallel tuning processes on this machine (1..64)")
    seed(p)
    p.add_argument("--force", action="store_true", help="replace another comparison in --out (after this one has "
                   "succeeded)")
    p.add_argument("--out", required=True, type=folder)
    p.set_defaults(func=run, needs=("matplotlib", "optuna"))


def run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from descentlab import datasets
    from descentlab.lab.compare import OUTPUTS, CompareConfig, check_folder, compare
    from descentlab.lab.options import check_name
    from descentlab.lab.train_run import DEFAULT_MODEL
    from descentlab.outputs import folder_lock, staged

    check_name("dataset", args.dataset, datasets.names())
    target = None
    if args.target:
        metric, sep, value = args.target.partition("=")
        if not sep:
            raise ValueError(f"--target must be METRIC=VALUE (val_loss=0.1 or val_accuracy=0.95), got {args.target!r}")
        try:
            target = (metric, float(value))
        except ValueError:
            target = (metric, math.nan)
        if not math.isfinite(target[1]):
            raise ValueError(f"--target value must be a finite number, got {value!r}")
    budget = args.budget.strip().lower()
    allowed = (f"--budget must be EPOCHS (an integer in [1, {MAX_EPOCHS}]) or SECONDS (a finite number > 0 and "
               f"<= 86400 ending in s, e.g. 30s), got {args.budget!r}")
    try:
        epochs, seconds = (10, float(budget[:-1])) if budget.endswith("s") else (int(budget), None)
    except ValueError:
        raise ValueError(allowed) from None
    if not 1 <= epochs <= MAX_EPOCHS or (seconds is not None and not (math.isfinite(seconds) and 0 < seconds <= 86400)):
        raise ValueError(allowed)
    tune = tuple(t.strip() for t in args.tune.split(","))
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"--optimizers names an optimizer twice: {args.optimizers!r}")
    out = Path(args.out)
    task = datasets.load(args.dataset).task
    config = CompareConfig(args.dataset, args.model or DEFAULT_MODEL[task], optimizers, str(out), seeds=args.seeds,
                           epochs=epochs, seconds=seconds, tune=tune, trials=args.trials, target=target,
                           batch_size=args.batch_size, storage=args.storage, workers=args.workers, seed=args.seed)
    try:
        config.validate()
    except ValueError as err:  # name the flags of the config's fields
        text = str(err)
        if text.startswith("optimizers: "):  # a row training cannot take (sparseadam), named as the flag
            raise ValueError("--" + text) from None
        for field, flag in (("optimizers", "--optimizers"), ("tunable", "--tune"), ("model", "--model"),
                            ("target", "--target"), ("seconds", "--budget")):
            if text.startswith(field) or text.startswith(f"unknown {field}") or text.startswith(
                    f"unknown {field.rstrip('s')}"):
                text = f"{flag}: {text}"
                break
        raise ValueError(text) from None
    with folder_lock(out, "descentlab compare"):
        replacing = check_folder(out, config, args.force)
        with staged(out, lambda p: p.name in OUTPUTS, last=("report.html",)) if replacing else nullcontext(out) as at:
            result = compare(config, write_to=at)
    print(f"{'optimizer':<10} {'best lr':>9} {'metric':>14} {'mean':>8} {'std':>7} {'target':>7} {'steps':>7}")
    for s in result.summary():
        steps = "-" if s["median_steps_to_target"] is None else f"{s['median_steps_to_target']:.0f}"
        print(f"{s['optimizer']:<10} {s['best_lr']:>9.3g} {s['metric']:>14} {s['mean']:>8.4f} {s['std']:>7.4f} "
              f"{s['reached_target']:>3}/{s['seeds']:<3} {steps:>7}")
    for s in result.summary():
        if (s.get("evaluations_per_step") or 1) > 1:
            print(f"note: {s['optimizer']} evaluated the loss and its gradient {s['evaluations_per_step']:.3g} times "
                  "per step (step(closure)); the others once")
    print(f"wrote {out / 'report.html'} (trials.csv, runs.csv, summary.json, curves.png, profile.png)")
    return 0
