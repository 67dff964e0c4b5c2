"""Optimizers with a train / eval switch (schedule-free): gradients are taken at one point (y, train mode), the
weights to evaluate and deploy are another (the average x, eval mode).

facebookresearch's ``schedulefree`` package asks its users to call ``optimizer.train()`` where they call
``model.train()`` and ``optimizer.eval()`` where they call ``model.eval()``, and to store checkpoints in eval mode.
``fit`` does so for every optimizer :func:`has_train_eval_switch` recognises. :class:`EvalWeights` puts the
evaluation weights in the model for an evaluation or a checkpoint and afterwards puts back the training point
*bit for bit* (``train()`` after ``eval()`` returns to y only up to float rounding — two lerps — so the exact y
taken before ``eval()`` is copied back after ``train()``): evaluating never changes the training trajectory.

BatchNorm (the package's caveat): running statistics are gathered in the training forward passes, at y, and
``fit`` does not recompute them at x, so a model with BatchNorm is evaluated at x with y's statistics.
descentlab's models have no BatchNorm; for a model of yours that has, :class:`EvalWeights` warns once (recompute
the statistics at x — forward passes in ``model.train()`` mode after ``optimizer.eval()`` — or use PreciseBN).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def has_train_eval_switch(optimizer: Any) -> bool:
    """Whether ``optimizer`` has the schedule-free train / eval switch.

    An optimizer may say so itself with a boolean attribute ``has_train_eval_switch`` (:class:`Partitioned` does:
    whether one of its parts has the switch). Otherwise: whether it has callable ``train`` and ``eval`` methods
    (``descentlab.ScheduleFreeAdamW`` / ``ScheduleFreeSGD``, the ``schedulefree`` package's optimizers and its
    wrapper). ``torch.optim.Optimizer`` has neither, so plain optimizers are never switched; an ``nn.Module``
    (whose ``train`` / ``eval`` set the module's mode) is not an optimizer and never counts.
    """
    if isinstance(optimizer, torch.nn.Module):
        return False
    declared = getattr(optimizer, "has_train_eval_switch", None)
    if isinstance(declared, bool):
        return declared
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


class EvalWeights:
    """The switch for ``fit``: :meth:`to_eval` before an evaluation or a checkpoint, :meth:`to_train` before the
    next training step. Nothing happens for an optimizer without the switch. ``model``'s parameters are the
    optimizer's (as in ``fit``)."""

    def __init__(self, optimizer: Any, model: torch.nn.Module) -> None:
        self.optimizer, self.model = optimizer, model
        self.switch = has_train_eval_switch(optimizer)
        self.train_state: dict[str, torch.Tensor] | None = None  # y, exactly, while the model holds x
        norms = [name for name, module in model.named_modules()
                 if isinstance(module, _BatchNorm) and module.track_running_stats]
        if self.switch and norms:
            warnings.warn(f"{type(optimizer).__name__} evaluates at its averaged weights x, but the BatchNorm running "
                          f"statistics of {', '.join(norms[:3])}{' …' if len(norms) > 3 else ''} are gathered at y "
                          "and fit does not recompute them at x (schedulefree's caveat): the metrics are at x with "
                          "y's statistics", UserWarning, stacklevel=3)

    @property
    def at_eval(self) -> bool:
        """Whether the model holds the evaluation weights (x) now."""
        return self.train_state is not None

    def to_eval(self) -> None:
        """Keep an exact copy of the training point, then ``optimizer.eval()`` (no-op when already there)."""
        if not self.switch or self.train_state is not None:
            return
        self.train_state = _clone_state(self.model)
        self.optimizer.eval()

    def to_train(self) -> None:
        """``optimizer.train()`` (which sets the optimizer's mode), then the exact training point kept by
        :meth:`to_eval` back into the model. Called at the start of training too: ``train()`` is a no-op in
        train mode, and puts an optimizer that starts in eval mode (the ``schedulefree`` package's) in train mode."""
        if not self.switch:
            return
        self.optimizer.train()
        if self.train_state is not None:
            self.model.load_state_dict(self.train_state)
            self.train_state = None

    def resume(self, train_state: dict[str, Any] | None) -> None:
        """After a checkpoint saved at the evaluation weights was loaded (model at x, optimizer in eval mode):
        switch to train mode and load its exact training point ``train_state`` (when it has one)."""
        if not self.switch:
            return
        self.optimizer.train()
        if train_state is not None:
            self.model.load_state_dict(train_state)
        self.train_state = None
