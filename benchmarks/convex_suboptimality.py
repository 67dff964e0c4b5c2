"""Suboptimality f(w_t) − f* of every registry optimizer on convex problems with exact optima.

Problems (full-batch gradient descent, float64): diabetes least squares (MSE, f* from numpy's lstsq),
breast-cancer L2-regularised logistic regression and digits L2-regularised softmax regression
(λ = 1e-2; f* from L-BFGS run to machine precision — strongly convex, so the optimum is unique).
Each optimizer's rate is chosen on a log grid by the final suboptimality (the same budget for all),
and every curve goes on one log-scale figure per problem.

    .venv/bin/python benchmarks/convex_suboptimality.py [--steps 500] [--out docs/images/suboptimality.png]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from descentlab import datasets
from descentlab.optim.registry import REGISTRY

LAMBDA = 1e-2
GRID = np.logspace(-4, 1, 11)


def problem(name: str):
    d = datasets.load(name)
    x, y = (t.double() if t.is_floating_point() else t for t in d.full)
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    if name == "diabetes":
        def f(w):
            return ((x1 @ w - y[:, 0]) ** 2).mean()
        w_star = torch.linalg.lstsq(x1, y[:, 0]).solution
        return f, torch.zeros(x1.shape[1], dtype=torch.float64), float(f(w_star))
    classes = int(y.max()) + 1

    def f(w):
        logits = x1 @ w.view(x1.shape[1], classes)
        return torch.nn.functional.cross_entropy(logits, y) + 0.5 * LAMBDA * (w.view(x1.shape[1], classes)[:-1] ** 2).sum()

    w = torch.zeros(x1.shape[1] * classes, dtype=torch.float64, requires_grad=True)
    lbfgs = torch.optim.LBFGS([w], lr=1, max_iter=2000, tolerance_grad=1e-14, tolerance_change=1e-16,
                              history_size=50, line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        value = f(w)
        value.backward()
        return value

    for _ in range(5):
        lbfgs.step(closure)
    return f, torch.zeros_like(w.detach()), float(f(w.detach()))


def curve(f, w0, f_star, name, lr, steps):
    w = torch.nn.Parameter(w0.clone())
    opt = REGISTRY[name].build([w], lr=lr, **({"weight_decay": 0.0} if name == "adamw" else {}))
    out = []
    for _ in range(steps):
        opt.zero_grad()
        value = f(w)
        out.append(value.item() - f_star)
        if not math.isfinite(out[-1]) or out[-1] > 1e12:
            return None
        value.backward()
        opt.step()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", default="docs/images/suboptimality.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["diabetes", "breast_cancer", "digits"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, pname in zip(axes, names):
        f, w0, f_star = problem(pname)
        print(f"{pname}: f* = {f_star:.6g}")
        for oname in REGISTRY:
            best = None
            for lr in GRID:
                c = curve(f, w0, f_star, oname, float(lr), args.steps)
                if c is not None and (best is None or c[-1] < best[1][-1]):
                    best = (lr, c)
            if best is None:
                print(f"  {oname:<9} diverged at every rate")
                continue
            lr, c = best
            print(f"  {oname:<9} lr {lr:<8.3g} final f − f* = {c[-1]:.3g}")
            ax.plot(np.maximum(c, 1e-16), label=f"{oname} (lr {lr:.2g})")
        ax.set_yscale("log")
        ax.set_title(f"{pname}: f(w_t) − f*")
        ax.set_xlabel("step (full batch)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    from descentlab.pictures import save_figure_atomically

    save_figure_atomically(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
