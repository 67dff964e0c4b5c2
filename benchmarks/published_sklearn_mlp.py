"""scikit-learn's "Compare stochastic learning strategies for MLPClassifier", digits part, with descentlab.

The example trains MLPClassifier(hidden_layer_sizes=(100,), relu, alpha=1e-4, batch_size=200, max_iter=15)
on MinMax-scaled digits and reports the *training* accuracy after 15 epochs. Published (digits):
constant-rate SGD 0.956, momentum 0.993, Nesterov 0.994, Adam 0.992. Here: the equivalent torch MLP
(64-100-10, ReLU, Glorot-uniform init like scikit-learn's, L2 alpha/batch on the weights as scikit-learn
adds it) trained with descentlab's SGD / SGD(momentum) / Nesterov / Adam at the example's rates
(SGD family 0.2, Adam 0.01). Several seeds, mean ± std.

    .venv/bin/python benchmarks/published_sklearn_mlp.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler

import descentlab
from descentlab.data import MiniBatches

PUBLISHED = {"constant SGD": 0.956, "momentum": 0.993, "Nesterov": 0.994, "Adam": 0.992}
ALPHA, BATCH, EPOCHS = 1e-4, 200, 15


def make_model(seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    with torch.no_grad():
        for layer in (model[0], model[2]):  # scikit-learn: uniform(±√(6/(fan_in+fan_out))) for weights and biases
            bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
    return model


def make_optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = [{"params": [model[0].weight, model[2].weight], "weight_decay": ALPHA / BATCH},
              {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}]
    if name == "constant SGD":
        return descentlab.SGD(groups, lr=0.2)
    if name == "momentum":
        return descentlab.SGD(groups, lr=0.2, momentum=0.9)
    if name == "Nesterov":
        return descentlab.Nesterov(groups, lr=0.2, beta=0.9)
    return descentlab.Adam(groups, lr=0.01)


def train_accuracy(name: str, seed: int) -> float:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(MinMaxScaler().fit_transform(x), dtype=torch.float32)
    y = torch.tensor(y)
    model = make_model(seed)
    opt = make_optimizer(name, model)
    batches = MiniBatches((x, y), BATCH, seed=seed)
    for epoch in range(EPOCHS):
        for xb, yb in batches.batches(epoch):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print(f"digits, MLP 64-100-10, batch {BATCH}, {EPOCHS} epochs, training accuracy over {args.seeds} seeds")
    print(f"{'strategy':<13} {'published':>9} {'descentlab':>16}")
    for name, published in PUBLISHED.items():
        accs = [train_accuracy(name, s) for s in range(args.seeds)]
        print(f"{name:<13} {published:>9.3f} {statistics.fmean(accs):>9.3f} ± {statistics.pstdev(accs):.3f}")


if __name__ == "__main__":
    main()
