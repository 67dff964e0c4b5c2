"""mnist1d (Greydanus & Kobak 2020), reproduced with descentlab: the paper's protocol and models.

Protocol: the package's default dataset (4000 train / 1000 test signals of length 40, generated, never
downloaded), Adam with lr 1e-2, batch 100, 6000 steps, no weight decay; models as in the paper's code:
logistic regression, MLP 40-100-100-10 (ReLU), ConvBase (three Conv1d of 25 channels, strides 2, then a
linear read-out). Published test accuracy: logistic 32 %, MLP 68 %, CNN 94 % (target: within ±3 points).

    .venv/bin/python benchmarks/published_mnist1d.py [--steps 6000] [--seeds 1]
"""

from __future__ import annotations

import argparse
import time

import torch

import descentlab
from descentlab.datasets.catalog import mnist1d_arrays
from descentlab.models import build

PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "cnn1d": 0.94}


def run(model_name: str, steps: int, seed: int) -> tuple[float, float]:
    x, y = mnist1d_arrays()
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    x_train, y_train, x_test, y_test = x[:4000], y[:4000], x[4000:], y[4000:]
    options = {"hidden": (100, 100)} if model_name == "mlp" else {}
    model = build(model_name, 40, 10, seed=seed, **options)
    opt = descentlab.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):  # the paper samples a random batch of 100 each step
        idx = torch.randint(0, 4000, (100,), generator=gen)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
        opt.step()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    return acc, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    print(f"mnist1d, Adam lr 1e-2, batch 100, {args.steps} steps, seeds {args.seeds}")
    print(f"{'model':<9} {'published':>9} {'descentlab':>10} {'gap':>6}  seconds")
    for name, published in PUBLISHED.items():
        results = [run(name, args.steps, seed) for seed in range(args.seeds)]
        acc = sum(r[0] for r in results) / len(results)
        secs = sum(r[1] for r in results)
        print(f"{name:<9} {published:>9.2f} {acc:>10.3f} {100 * (acc - published):>+5.1f}  {secs:6.1f}")


if __name__ == "__main__":
    main()
