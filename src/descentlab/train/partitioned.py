"""Several optimizers stepped as one, each over its own parameters (optax's ``partition``): how a matrices-only
optimizer trains a whole model.

torch's Muon documentation: Muon is for the hidden layers' 2-D weight matrices; "the input embedding, final output
layer, and any internal gains or biases should be optimized using a standard method such as AdamW".
:func:`split_matrices` builds that split for a registry row that requires ``"matrices"`` (``muon``): its 2-D
parameters to the row, every other one to AdamW. :class:`Partitioned` then looks to ``fit`` like one optimizer:
``param_groups`` lists every part's groups (the same dicts, so a schedule that sets ``group["lr"]`` sets the
part's rate), ``zero_grad``, ``step`` and ``state_dict`` / ``load_state_dict`` go to every part, and the
schedule-free switch (``train()`` / ``eval()``, :mod:`descentlab.train.eval_switch`) to every part that has it:
``has_train_eval_switch`` says whether one does.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer

from descentlab.train.eval_switch import has_train_eval_switch

#: The optimizer of the parameters a matrices-only row does not step (torch's Muon docs: AdamW) and its rate.
COMPANION = "adamw"


class Partitioned(Optimizer):
    """``parts`` (optimizers over disjoint parameters) stepped as one optimizer."""

    def __init__(self, parts: Iterable[Optimizer]) -> None:  # no Optimizer.__init__: the parts hold the state
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("Partitioned needs at least one optimizer")
        self.defaults = dict(self.parts[0].defaults)

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [group for part in self.parts for group in part.param_groups]

    @property
    def state(self) -> dict[Any, Any]:  # type: ignore[override]
        return {param: value for part in self.parts for param, value in part.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        parts = state_dict.get("parts") if isinstance(state_dict, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.parts):
            raise ValueError(f"Partitioned.load_state_dict: expected {{'parts': [{len(self.parts)} optimizer "
                             f"states]}}, got {type(state_dict).__name__} with "
                             f"{len(parts) if isinstance(parts, list) else 'no'} parts")
        for part, saved in zip(self.parts, parts):
            part.load_state_dict(saved)

    @property
    def has_train_eval_switch(self) -> bool:
        """Whether a part has the schedule-free train / eval switch (then ``fit`` calls :meth:`train` /
        :meth:`eval` as for that optimizer alone)."""
        return any(has_train_eval_switch(part) for part in self.parts)

    def train(self) -> None:
        """``train()`` on every part that has the switch (the others have no modes)."""
        for part in self.parts:
            if has_train_eval_switch(part):
                part.train()  # type: ignore[attr-defined]

    def eval(self) -> None:
        """``eval()`` on every part that has the switch."""
        for part in self.parts:
            if has_train_eval_switch(part):
                part.eval()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Partitioned({', '.join(type(p).__name__ for p in self.parts)})"


def split_matrices(name: str, model: torch.nn.Module | Iterable[torch.Tensor], lr: float,
                   options: dict[str, Any]) -> Optimizer:
    """Registry row ``name`` (matrices only) over ``model``'s 2-D parameters at ``lr`` with ``options``, and AdamW
    over the others at its registry rate scaled as ``lr`` is scaled from the row's own (so tuning ``lr`` moves
    both); a model without 2-D parameters is refused, naming the row and the shapes it has. ``model`` may also be
    the parameters themselves (what an optimizer factory ``make(params, lr)`` is given: ``lr_find``)."""
    from descentlab.optim.registry import get_spec

    spec, companion = get_spec(name), get_spec(COMPANION)
    given = model.parameters() if isinstance(model, torch.nn.Module) else model
    what = type(model).__name__ if isinstance(model, torch.nn.Module) else "the parameters given"
    params = [p for p in given if p.requires_grad]
    matrices = [p for p in params if p.ndim == 2 and not p.is_complex()]
    rest = [p for p in params if not (p.ndim == 2 and not p.is_complex())]
    if not matrices:
        shapes = sorted({tuple(p.shape) for p in params})
        raise ValueError(f"{name} steps 2-D parameters only, and {what} has none (its parameters' "
                         f"shapes: {shapes}); choose a model with weight matrices (linear, logistic, mlp)")
    main = spec.build(matrices, lr=lr, **options)
    if not rest:
        return main
    return Partitioned([main, companion.build(rest, lr=companion.lr * lr / spec.lr)])
