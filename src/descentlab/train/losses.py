"""Loss functions by name, and the metrics each task reports."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mean_output(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """For models whose output is already the per-sample loss (DeepOBS quadratic): its mean."""
    return output.mean()


LOSSES: dict[str, LossFn] = {
    "mse": F.mse_loss,  # the mean of squared errors (formulas.md), not the sum
    "cross_entropy": F.cross_entropy,
    "mean_output": mean_output,
}
TASK_LOSS = {"regression": "mse", "classification": "cross_entropy", "quadratic": "mean_output"}


def get_loss(loss: str | LossFn) -> LossFn:
    """A loss callable from a name (``mse``, ``cross_entropy``, ``mean_output``) or the callable itself."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}. Valid names: {', '.join(LOSSES)} (or pass a callable)")
    return LOSSES[loss]
