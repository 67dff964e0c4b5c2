"""``descentlab lr-find DATASET --model M --optimizer O --out DIR``: the learning-rate range test."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lr-find", help="learning-rate range test (Smith 2017) on a dataset")
    p.add_argument("dataset")
    p.add_argument("--model", help="default: by task (linear / logistic / quadratic)")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--opt", help="optimizer options, e.g. momentum=0.9")
    p.add_argument("--start-lr", type=float, default=1e-6)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", default="64", help="full or an integer (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite lr_find.png / lr_find.csv")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run, needs=("matplotlib",))


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets
    from descentlab.lab.lr_find import find_lr
    from descentlab.lab.options import check_name, parse_pairs
    from descentlab.lab.train_run import Setting
    from descentlab.optim.registry import get_spec
    from descentlab.outputs import check_outputs

    check_name("dataset", args.dataset, datasets.names())
    get_spec(args.optimizer)
    options = parse_pairs(args.opt, "--opt")
    out = Path(args.out)
    targets = [out / "lr_find.png", out / "lr_find.csv"]
    check_outputs(out, [p.name for p in targets], args.force, "lr_find outputs")
    batch = args.batch_size if args.batch_size == "full" else int(args.batch_size)
    setting = Setting(args.dataset, args.model, args.optimizer, options=options, batch_size=batch, seed=args.seed)
    data = setting.load()
    model_name = setting.model_name(data)
    result = find_lr(setting, data=data, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    out.mkdir(parents=True, exist_ok=True)
    result.plot(targets[0], title=f"lr range test: {args.dataset} · {model_name} · {args.optimizer}")
    result.to_csv(targets[1])
    print(f"suggested learning rate for {args.optimizer}: {result.suggestion:.3g}")
    print(f"rule: {result.rule}")
    print(f"(min-loss rate / 10: {result.min_loss_lr:.3g}; {result.extra['steps_run']} steps run)")
    print(f"wrote {targets[0]} and {targets[1]}")
    return 0
