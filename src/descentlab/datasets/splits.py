"""The container every dataset returns: seeded train / val / test splits, standardised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

TASKS = ("regression", "classification", "quadratic")


@dataclass
class DataSplits:
    """Train / validation / test tensors of one dataset.

    ``task`` is ``"regression"`` (MSE), ``"classification"`` (cross-entropy; ``y`` holds class indices)
    or ``"quadratic"`` (the model's output is the per-sample loss). ``full`` is the whole set before
    splitting (standardised with the training statistics); ``info`` holds known optima and provenance.
    """

    name: str
    task: str
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    full: tuple[torch.Tensor, torch.Tensor]
    n_features: int
    n_outputs: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: name, task, sizes and shapes."""
        return (f"{self.name}: {self.task}, {len(self.train[0])} train / {len(self.val[0])} val / "
                f"{len(self.test[0])} test, {self.n_features} features, {self.n_outputs} outputs")


def split_indices(n: int, seed: int, fractions: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """A seeded permutation of ``0..n−1`` cut into train / val / test by ``fractions``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def make_splits(name: str, task: str, x: np.ndarray, y: np.ndarray, *, seed: int,
                fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), standardize: bool = True,
                info: dict[str, Any] | None = None) -> DataSplits:
    """Split ``x``/``y`` with a seeded permutation and standardise features with the training statistics."""
    x = np.asarray(x, dtype=np.float32)
    train, val, test = split_indices(len(x), seed, fractions)
    if standardize:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    y_t = torch.as_tensor(y, dtype=torch.long if task == "classification" else torch.float32)
    if task == "regression" and y_t.dim() == 1:
        y_t = y_t[:, None]
    x_t = torch.as_tensor(x)

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.as_tensor(idx, dtype=torch.long)
        return x_t[ix], y_t[ix]

    n_outputs = int(y_t.max()) + 1 if task == "classification" else (y_t.shape[1] if y_t.dim() > 1 else 1)
    return DataSplits(name, task, part(train), part(val), part(test), (x_t, y_t), x_t.shape[1], n_outputs,
                      dict(info or {}))
