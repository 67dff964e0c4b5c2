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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets, models
    from descentlab.cli.options import check_name, parse_pairs
    from descentlab.cli.train import DEFAULT_MODEL
    from descentlab.lab.lr_find import lr_find
    from descentlab.optim.registry import get_spec
    from descentlab.train import TASK_LOSS

    check_name("dataset", args.dataset, datasets.names())
    spec = get_spec(args.optimizer)
    options = parse_pairs(args.opt, "--opt")
    out = Path(args.out)
    targets = [out / "lr_find.png", out / "lr_find.csv"]
    if any(p.exists() for p in targets) and not args.force:
        raise FileExistsError(f"{out} already holds lr_find outputs; pass --force to overwrite")
    data = datasets.load(args.dataset, seed=args.seed)
    model_name = check_name("model", args.model or DEFAULT_MODEL[data.task], models.names())
    extra = {"hessian": data.info["hessian"]} if model_name == "quadratic" else {}
    model = models.build(model_name, data.n_features, data.n_outputs, seed=args.seed, **extra)
    batch = args.batch_size if args.batch_size == "full" else int(args.batch_size)
    result = lr_find(model, data.train, lambda params, lr: spec.build(params, lr=lr, **options),
                     loss=TASK_LOSS[data.task], start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps,
                     batch_size=batch, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    result.plot(targets[0], title=f"lr range test: {args.dataset} · {model_name} · {args.optimizer}")
    result.to_csv(targets[1])
    print(f"suggested learning rate for {args.optimizer}: {result.suggestion:.3g}")
    print(f"rule: {result.rule}")
    print(f"(min-loss rate / 10: {result.min_loss_lr:.3g}; {result.extra['steps_run']} steps run)")
    print(f"wrote {targets[0]} and {targets[1]}")
    return 0
