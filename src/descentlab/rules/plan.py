"""The step plan: the one contract between an optimizer and every executor of its step.

An optimizer declares, once per param group and step, *what* its step is; executors (the reference loop in
:mod:`descentlab.optim.reference`, the C kernels of :mod:`descentlab.fused.cpu_step`, the compiled kernels of
:mod:`descentlab.fused.dispatch`) decide *how* to run it. No executor knows an optimizer class.

For one tensor ``w`` with gradient ``g`` and state ``S`` a plan means, in this order::

    g ← −g                                   if maximize
    g ← g + λ w                              if weight_decay λ ≠ 0 and not decoupled (coupled, L2)
    t ← t + 1;  step = t                     if counts_steps (``S["step"]``, a 0-d tensor)
    w ← w (1 − η λ)                          if decoupled (η = hp["lr"])
    rule(w, g, *(S[k] for k in state), **hp, [step=t], [first_step=…])

``step`` and ``first_step`` are passed when the rule takes them and ``hp`` does not already fix them.
``extra`` names the entries of ``state`` that are 0-d scalars (NAdam's running product ``Π``), not
tensors shaped like ``w``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

Rule = Callable[..., None]


@dataclass(frozen=True, init=False)
class StepPlan:
    """One group's step (see the module docstring).

    Attributes:
        rule: a function of :mod:`descentlab.rules` (or any function with the same calling convention).
        state: the state keys passed positionally after ``(param, grad)``, in the rule's order.
        hp: the rule's keyword hyperparameters, by name (Python floats, bools and strings; never mutated).
        maximize: ascend instead of descend.
        weight_decay: λ.
        decoupled: apply λ to the weights (``w ← w(1 − ηλ)``) instead of the gradient.
        counts_steps: the state holds ``step``, advanced before the rule.
        extra: entries of ``state`` that are 0-d scalars.
    """

    rule: Rule
    state: tuple[str, ...] = ()
    hp: dict[str, Any] = field(default_factory=dict)
    maximize: bool = False
    weight_decay: float = 0.0
    decoupled: bool = False
    counts_steps: bool = False
    extra: tuple[str, ...] = ()

    def __init__(self, rule: Rule, state: tuple[str, ...] = (), hp: dict[str, Any] | None = None,
                 maximize: bool = False, weight_decay: float = 0.0, decoupled: bool = False,
                 counts_steps: bool = False, extra: tuple[str, ...] = ()) -> None:
        # A plan is built for every group at every step: plain writes into the instance dict instead of the
        # eight frozen-attribute writes (object.__setattr__) of a generated __init__ — about half the cost.
        # The fields, their order and defaults are the dataclass's: dataclasses.replace, fields, == and repr hold.
        d = self.__dict__
        d["rule"], d["state"], d["hp"], d["maximize"] = rule, state, {} if hp is None else hp, maximize
        d["weight_decay"], d["decoupled"], d["counts_steps"], d["extra"] = weight_decay, decoupled, counts_steps, extra

    @property
    def name(self) -> str:
        """The rule's name (``"adam"``, ``"heavy_ball"``, …)."""
        return self.rule.__name__

    @property
    def stateful(self) -> bool:
        """Whether a tensor needs state before the rule can run."""
        return self.counts_steps or bool(self.state)


_ACCEPTS: dict[Rule, frozenset[str]] = {}


def rule_accepts(rule: Rule, argument: str) -> bool:
    """Whether ``rule`` takes the keyword ``argument`` (its signature is read once)."""
    names = _ACCEPTS.get(rule)
    if names is None:
        names = _ACCEPTS[rule] = frozenset(inspect.signature(rule).parameters)
    return argument in names
