"""``descentlab lr-find DATASET --model M --optimizer O --out DIR``: the learning-rate range test.

Every registry row runs or is refused in one line naming the reason and the rows that run
(:func:`descentlab.lab.lr_find.lr_find_refusal`: ``lbfgs`` picks its own step, ``sparseadam`` needs sparse gradients);
``muon`` sweeps Muon's rate on the 2-D weights, AdamW stepping the rest at its ratio, as ``train`` builds it."""

from __future__ import annotations

import argparse
from pathlib import Path

from descentlab.cli._args import MAX_STEPS, folder, integer, number, seed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lr-find", help="learning-rate range test (Smith 2017) on a dataset")
    p.add_argument("dataset")
    p.add_argument("--model", help="default: by task (linear / logistic / quadratic)")
    p.add_argument("--optimizer", default="sgd", help="a registry row (lbfgs and sparseadam are refused, with why)")
    p.add_argument("--opt", help="optimizer options, e.g. momentum=0.9")
    p.add_argument("--start-lr", type=number(0, low_open=True), default=1e-6, help="a finite number > 0")
    p.add_argument("--end-lr", type=number(0, low_open=True), default=10.0, help="a finite number > --start-lr")
    p.add_argument("--steps", type=integer(10, MAX_STEPS), default=100, help=f"10..{MAX_STEPS} (default 100)")
    p.add_argument("--batch-size", default="64", type=_batch_size, help="full or a positive integer (default 64)")
    seed(p)
    p.add_argument("--force", action="store_true", help="overwrite lr_find.png / lr_find.csv")
    p.add_argument("--out", required=True, type=folder)
    p.set_defaults(func=run, needs=("matplotlib",))


def _batch_size(text: str) -> int | str:
    if text.strip() == "full":
        return "full"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be full or a positive integer, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets
    from descentlab.lab.lr_find import check_lr_findable, find_lr
    from descentlab.lab.options import check_name, parse_pairs
    from descentlab.lab.train_run import Setting
    from descentlab.optim.registry import get_spec
    from descentlab.outputs import check_outputs

    from descentlab.lab.train_run import check_optimizer
    from descentlab.outputs import folder_lock, staged

    check_name("dataset", args.dataset, datasets.names())
    spec = get_spec(args.optimizer)
    check_lr_findable(args.optimizer)
    if not args.start_lr < args.end_lr:
        raise ValueError(f"--end-lr must be larger than --start-lr, got --start-lr {args.start_lr:g} and "
                         f"--end-lr {args.end_lr:g}")
    options = parse_pairs(args.opt, "--opt")
    check_optimizer(args.optimizer, options, args.start_lr)
    out = Path(args.out)
    names = ["lr_find.png", "lr_find.csv"]
    setting = Setting(args.dataset, args.model, args.optimizer, options=options, batch_size=args.batch_size,
                      seed=args.seed)
    data = setting.load()
    model_name = setting.model_name(data)
    if isinstance(args.batch_size, int) and args.batch_size > len(data.train[0]):
        raise ValueError(f"--batch-size {args.batch_size} is larger than the training set "
                         f"({len(data.train[0])} samples)")
    with folder_lock(out, "descentlab lr-find"):
        check_outputs(out, names, args.force, "lr_find outputs")
        result = find_lr(setting, data=data, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
        with staged(out, lambda p: p.name in names) as stage:
            result.plot(stage / names[0], title=f"lr range test: {args.dataset} · {model_name} · {args.optimizer}")
            result.to_csv(stage / names[1])
    print(f"suggested learning rate for {args.optimizer}: {result.suggestion:.3g}")
    if "matrices" in spec.requires:
        from descentlab.train.partitioned import COMPANION

        ratio = get_spec(COMPANION).lr / spec.lr
        print(f"({args.optimizer}'s rate on the 2-D weights; {COMPANION} steps the other parameters at {ratio:g} × it, "
              "as train and compare build it)")
    print(f"rule: {result.rule}")
    print(f"(min-loss rate / 10: {result.min_loss_lr:.3g}; {result.extra['steps_run']} steps run)")
    print(f"wrote {out / names[0]} and {out / names[1]}")
    return 0
