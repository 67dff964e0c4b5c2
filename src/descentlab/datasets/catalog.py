"""The dataset registry: bundled scikit-learn sets, generated mnist1d, synthetic problems with known optima.

Nothing is ever downloaded: scikit-learn's sets ship inside the package, mnist1d is *generated* by its
package's own generator (and cached), the synthetic sets are drawn from seeded generators.
scikit-learn and mnist1d come with ``pip install 'descentlab[lab]'`` and are imported only when such a set is
loaded; without them ``linear`` and ``quadratic_deep`` still load, the others raise a one-line ``ImportError``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from descentlab.datasets.splits import DataSplits, make_splits
from descentlab.extras import require


def _sklearn(loader_name: str, task: str) -> Callable[..., DataSplits]:
    def load(seed: int = 0, **kwargs) -> DataSplits:
        sklearn_datasets = require("sklearn.datasets", f"the {loader_name.removeprefix('load_')!r} dataset")
        x, y = getattr(sklearn_datasets, loader_name)(return_X_y=True)
        return make_splits(loader_name.removeprefix("load_"), task, x, y, seed=seed, **kwargs,
                           info={"source": f"sklearn.datasets.{loader_name} (bundled, offline)"})

    load.__doc__ = f"scikit-learn's bundled ``{loader_name}`` ({task})."
    return load


def _cache_dir() -> Path:
    root = os.environ.get("DESCENTLAB_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME",
                                                                             os.path.expanduser("~/.cache")), "descentlab")
    return Path(root)


def mnist1d_arrays(num_samples: int = 5000, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """mnist1d generated with its package's generator (``mnist1d.data.make_dataset``), cached on disk
    (atomically) by its arguments. The default arguments are the paper's (4000 train + 1000 test)."""
    mnist1d_data = require("mnist1d.data", "the 'mnist1d' dataset")
    get_dataset_args, make_dataset = mnist1d_data.get_dataset_args, mnist1d_data.make_dataset
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    key = hashlib.sha256(json.dumps(vars(args), sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = _cache_dir() / f"mnist1d-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return f["x"], f["y"]
    data = make_dataset(args)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
    return x, y


def load_mnist1d(seed: int = 0, **kwargs) -> DataSplits:
    """mnist1d (Greydanus & Kobak 2020): 40-point 1-D signals of the digits 0–9, generated offline."""
    x, y = mnist1d_arrays()
    return make_splits("mnist1d", "classification", x, y, seed=seed, **kwargs,
                       info={"source": "mnist1d.data.make_dataset(get_dataset_args()), generated"})


def load_linear(seed: int = 0, n: int = 1000, features: int = 10, noise: float = 0.1, **kwargs) -> DataSplits:
    """Synthetic linear regression ``y = X w* + b* + σ ε`` with a known optimum (``info["w_star"]``)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    w, b = rng.normal(size=features), float(rng.normal())
    y = x @ w + b + noise * rng.normal(size=n)
    return make_splits("linear", "regression", x, y, seed=seed, standardize=False, **kwargs,
                       info={"w_star": w.tolist(), "b_star": b, "noise": noise})


def _deepobs_rotation(dim: int, rng: np.random.RandomState) -> np.ndarray:
    """A Haar-random rotation in SO(dim) by the subgroup algorithm (Diaconis & Shahshahani 1987), as in DeepOBS."""
    t = 2 * np.pi * rng.uniform()
    r = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    for d in range(2, dim):
        v = rng.normal(size=(d + 1, 1))
        v = v / np.sqrt(v.T @ v)
        e = np.concatenate(([[1.0]], np.zeros((d, 1))), axis=0)
        x = (e - v) / np.sqrt((e - v).T @ (e - v))
        block = np.vstack([np.hstack([[[1.0]], np.zeros((1, d))]), np.hstack([np.zeros((d, 1)), r])])
        r = block - 2 * np.outer(x, x.T @ block)
    return -r


def quadratic_deep_hessian() -> np.ndarray:
    """DeepOBS ``quadratic_deep``'s Hessian ``Q = Rᵀ diag(λ) R``: 90 eigenvalues from U(0, 1), 10 from U(30, 60),
    drawn with ``RandomState(42)`` in DeepOBS's order, then a random rotation from the same generator."""
    rng = np.random.RandomState(42)
    eigenvalues = np.concatenate((rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)))
    r = _deepobs_rotation(100, rng)
    return r.T @ np.diag(eigenvalues) @ r


def load_quadratic_deep(seed: int = 0, **kwargs) -> DataSplits:
    """DeepOBS's ``quadratic_deep`` (Schneider, Balles & Hennig 2019): per-sample loss
    ``½ (θ − x)ᵀ Q (θ − x)`` in 100-d, θ starting at 1, data ``x ~ N(0, 0.6² I)`` — 1000 training draws
    (``RandomState(42)``) and 1000 test draws (``RandomState(43)``), as in DeepOBS's ``quadratic`` set.
    The exact optimum of the training loss is the training mean; ``info`` carries it and the losses there.
    The validation split is a seeded fifth of the training draws (DeepOBS has none).

    Reconstructed from DeepOBS's source (testproblems/quadratic_deep.py, datasets/quadratic.py); not
    verified against a DeepOBS run here (DeepOBS is not installable offline alongside torch 2.13).
    """
    train = np.random.RandomState(42).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    test = np.random.RandomState(43).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    q = quadratic_deep_hessian()
    theta_star = train.astype(np.float64).mean(axis=0)

    def loss_at(theta: np.ndarray, x: np.ndarray) -> float:
        d = theta[None, :] - x.astype(np.float64)
        return float(0.5 * np.einsum("ni,ij,nj->n", d, q, d).mean())

    import torch

    order = np.random.default_rng(seed).permutation(1000)
    val_idx, train_idx = order[:200], order[200:]
    zeros = lambda n: torch.zeros(n, dtype=torch.float32)  # noqa: E731 - the "targets" are unused
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    info = {"hessian": q, "theta_star": theta_star.tolist(), "train_loss_star": loss_at(theta_star, train),
            "test_loss_star": loss_at(theta_star, test), "test_loss_at_init": loss_at(np.ones(100), test),
            "source": "DeepOBS quadratic_deep recipe"}
    return DataSplits("quadratic_deep", "quadratic", (t(train[train_idx]), zeros(800)), (t(train[val_idx]), zeros(200)),
                      (t(test), zeros(1000)), (t(train), zeros(1000)), 100, 1, info)


LOADERS: dict[str, Callable[..., DataSplits]] = {
    "digits": _sklearn("load_digits", "classification"),
    "breast_cancer": _sklearn("load_breast_cancer", "classification"),
    "diabetes": _sklearn("load_diabetes", "regression"),
    "iris": _sklearn("load_iris", "classification"),
    "wine": _sklearn("load_wine", "classification"),
    "mnist1d": load_mnist1d,
    "linear": load_linear,
    "quadratic_deep": load_quadratic_deep,
}


def names() -> list[str]:
    """The dataset names."""
    return list(LOADERS)


def load(name: str, seed: int = 0, **kwargs) -> DataSplits:
    """Load dataset ``name`` with seeded splits; an unknown name raises ``ValueError`` listing the valid ones."""
    if name not in LOADERS:
        close = difflib.get_close_matches(str(name), LOADERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Valid names: {', '.join(LOADERS)}")
    return LOADERS[name](seed=seed, **kwargs)
