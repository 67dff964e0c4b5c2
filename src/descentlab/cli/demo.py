"""``descentlab demo``: the main job.

For now it trains a small softmax-regression model on scikit-learn's bundled digits with every
registry optimizer (same data, same initial weights, full-batch steps) and prints a table.
The lab (races, reports) will extend it.
"""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the main job: train a small model with every optimizer")
    p.add_argument("--steps", type=int, default=200, help="full-batch steps per optimizer (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from sklearn.datasets import load_digits

    from descentlab.optim.registry import REGISTRY

    if args.steps <= 0:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(args.seed)
    init = torch.nn.Linear(64, 10)
    print(f"softmax regression on digits ({len(y)} samples), {args.steps} full-batch steps, seed {args.seed}")
    print(f"{'optimizer':<10} {'lr':>8} {'start loss':>11} {'final loss':>11} {'accuracy':>9} {'ms/step':>8}")
    for name, spec in REGISTRY.items():
        model = torch.nn.Linear(64, 10)
        model.load_state_dict(init.state_dict())
        opt = spec.build(model.parameters())
        loss_fn = torch.nn.CrossEntropyLoss()
        start = loss_fn(model(x), y).item()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        ms = (time.perf_counter() - t0) * 1000 / args.steps
        with torch.no_grad():
            logits = model(x)
            final = loss_fn(logits, y).item()
            acc = (logits.argmax(1) == y).float().mean().item()
        print(f"{name:<10} {spec.lr:>8g} {start:>11.4f} {final:>11.4f} {acc:>9.3f} {ms:>8.2f}")
    return 0
