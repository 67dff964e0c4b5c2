"""``ASGD``: ``torch.optim.ASGD``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter, scalar_dtype
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import as_float, check_bool, check_range
from descentlab.rules.asgd import asgd
from descentlab.rules.plan import StepPlan


class ASGD(RuleOptimizer):
    r"""ASGD, averaged stochastic gradient descent — a drop-in for ``torch.optim.ASGD``.

    Symbols: ``η`` = ``lr``, ``λ`` = ``lambd``, ``α`` = ``alpha``, ``t₀`` = ``t0``, ``ā`` = ``state["ax"]`` (starts
    at 0), ``η_t`` = ``state["eta"]`` (starts at η), ``μ_t`` = ``state["mu"]`` (starts at 1), ``t`` =
    ``state["step"]``, weight decay ``λ_w`` = ``weight_decay``::

        g ← −g if maximize;   g ← g + λ_w w
        w ← w (1 − λ η_t);   w ← w − η_t g
        ā ← ā + μ_t (w − ā)                     (ā ← w while μ_t = 1)
        η_{t+1} = η / (1 + λ η t)^α;   μ_{t+1} = 1 / max(1, t − t₀)

    The parameters are the SGD iterates; the averaged weights are ``state["ax"]`` (copy them into the model to
    evaluate the average). ``η_t``, ``μ_t`` and ``t`` are 0-d tensors of PyTorch's scalar dtype, as torch keeps them.

    Conventions: PyTorch's ASGD, after Bottou's "Stochastic gradient descent tricks" schedule ``η_t =
    η₀ (1 + λ η₀ t)^{−α}`` with α = 0.75; the ``λ`` decay term ``w (1 − λ η_t)`` is part of it (not weight decay).
    With the default ``t0 = 1e6`` the averaging starts after a million steps: set ``t0`` to the step where the
    average should begin.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = descentlab.ASGD([w], lr=0.1, lambd=0.0)
        >>> (w ** 2).sum().backward(); opt.step()    # w ← w − η g
        >>> [round(x, 4) for x in w.tolist()]
        [0.8, -0.8]
    """

    supports_capturable = True  # capturable=True as torch.optim.ASGD takes it (see RuleOptimizer)

    #: ``η_t = η / (1 + λ η t)^α`` is not linear in ``η``: the lab's races step each rate separately.
    step_is_linear_in_lr = False

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable, impl=impl,
                        nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("lambd", group["lambd"])
        check_range("alpha", group["alpha"])
        t0 = as_float("t0", group["t0"])
        if t0 != t0:
            raise ValueError(f"t0 must be a real number, got {group['t0']!r}")
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_bool("maximize", group["maximize"])
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["eta"] = torch.tensor(as_float("lr", group["lr"]), dtype=scalar_dtype())
        state["mu"] = torch.ones((), dtype=scalar_dtype())
        state["ax"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """As torch loads it: ``eta`` and ``mu`` saved as plain numbers become the 0-d tensors torch keeps."""
        super().__setstate__(state)
        for group in self.param_groups:
            for param in group["params"]:
                entry = self.state.get(param)
                for key in ("eta", "mu"):
                    if entry and key in entry and not torch.is_tensor(entry[key]):
                        entry[key] = torch.tensor(float(entry[key]), dtype=scalar_dtype())

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(asgd, ("ax", "eta", "mu"),
                        dict(lr=float(group["lr"]), lambd=as_float("lambd", group["lambd"]),
                             alpha=as_float("alpha", group["alpha"]), t0=as_float("t0", group["t0"])),
                        maximize=group["maximize"], weight_decay=group["weight_decay"], counts_steps=True,
                        extra=("eta", "mu"))
