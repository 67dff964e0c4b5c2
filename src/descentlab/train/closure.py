"""Training steps through ``step(closure)``, for optimizers that re-evaluate the loss within one step (L-BFGS).

``fit`` steps such an optimizer (a registry row that ``requires`` ``"closure"``, or ``torch.optim.LBFGS``) on each
mini-batch as a torch user does: ``optimizer.step(closure)``, where the closure zeroes the gradients, computes the
batch's loss, calls ``backward()`` and returns the loss — so one step may evaluate the loss and its gradient up to
``max_eval`` times on the same batch. :class:`ClosureStep` counts those evaluations (``fit`` records the running
count as ``evaluations`` in each epoch's row) and refuses to step from a non-finite loss: a non-finite first
evaluation stops the step before the optimizer has moved anything, so ``on_nonfinite`` keeps its meaning.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` must be stepped with ``step(closure)``: ``torch.optim.LBFGS``, or the class of a
    registry row that requires a closure (``descentlab.LBFGS``)."""
    from descentlab.optim.registry import REGISTRY

    classes = tuple(spec.cls for spec in REGISTRY.values() if "closure" in spec.requires) + (torch.optim.LBFGS,)
    return isinstance(optimizer, classes)


class FirstLossNotFinite(FloatingPointError):
    """The closure's first evaluation of a step gave a non-finite loss (``value``): nothing was stepped."""

    def __init__(self, value: float) -> None:
        super().__init__(f"non-finite loss ({value}) at the start of the step")
        self.value = value


class ClosureStep:
    """``optimizer.step(closure)`` on one batch, with the evaluations counted (``evaluations``, from ``start``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, start: int = 0) -> None:
        self.optimizer = optimizer
        self.evaluations = start

    def __call__(self, loss_of: Callable[[], tuple[torch.Tensor, float]]) -> float:
        """Step once; ``loss_of()`` gives the batch's loss tensor (to backpropagate) and its value (the global mean
        on a data-parallel run, which the closure returns, so that every rank takes the same decisions). Returns the
        loss at the start of the step; raises :class:`FirstLossNotFinite` (nothing stepped) when it is not finite."""
        first = [True]

        def closure() -> Any:
            self.optimizer.zero_grad(set_to_none=True)
            value, current = loss_of()
            if first[0] and not math.isfinite(current):
                raise FirstLossNotFinite(current)
            first[0] = False
            value.backward()
            self.evaluations += 1
            return torch.tensor(current, dtype=torch.float64)

        return float(self.optimizer.step(closure))
