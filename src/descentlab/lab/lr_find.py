"""The learning-rate range test (Smith 2017): one short run with an exponentially increasing rate.

For steps ``i = 0 … n−1`` the rate is ``η_i = η_start · (η_end / η_start)^(i / (n − 1))``; the loss of
each mini-batch is smoothed with the bias-corrected EMA (β = 0.98 by default) and the run stops early
once the smoothed loss exceeds ``diverge_factor`` × its minimum. The loss is smoothed over a
window proportional to the sweep (4 % of its steps), forwards and backwards, so the smoothed curve does not lag
the raw one; the suggestion is the rate at the lowest smoothed loss divided by 10 (the rule that came closest
to the best decade of rates on several datasets, models and optimizers, see :data:`RULES`). The model and optimizer are
restored afterwards.

Every registry row either runs or is refused with :class:`LRFindNotApplicable`, naming the reason and the rows
that run (:func:`lr_find_refusal`): ``muon`` (matrices only) steps the 2-D weights and AdamW the other parameters,
as ``train`` and ``compare`` build it (:func:`descentlab.train.partitioned.split_matrices`) — the rate swept is
Muon's, AdamW's keeps its ratio to it; ``lbfgs`` (``step(closure)``) picks its own step, so the test does not apply;
``sparseadam`` takes sparse gradients only, and the models here give dense ones. The schedule-free rows' mini-batch
losses are those at y, the point their gradients are taken at (the sweep never evaluates, so never switches to x).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from descentlab.averaging import EMA
from descentlab.data.batches import MiniBatches
from descentlab.train.losses import LossFn, get_loss

#: What the range test offers a registry row beyond the ordinary contract (``registry.REQUIREMENTS``): matrices —
#: the 2-D weights to the row, the other parameters to AdamW (``train.partitioned``), as ``train`` / ``compare``.
LR_FIND_OFFERS: tuple[str, ...] = ("matrices",)

#: Why the range test refuses a row with a requirement it does not offer.
REFUSALS: dict[str, str] = {
    "closure": "it picks its own step: one step(closure) runs up to max_iter quasi-Newton iterations on the batch, "
               "and with line_search_fn='strong_wolfe' a line search sets the step length (lr is only its first "
               "trial), so a range test (one step per rate, the loss showing what the rate does) does not apply; "
               "train it at its default lr",
    "sparse": "it takes sparse gradients only (nn.Embedding(sparse=True)) and the lab's models give dense ones, as "
              "train says too (from Python, a model with sparse embeddings may pass its own make_optimizer)",
}


class LRFindNotApplicable(ValueError):
    """The range test refuses this optimizer: ``name`` (a registry row, or the optimizer's class), ``reason`` and
    ``works``, the registry rows it runs with."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason, self.works = name, reason, lr_findable_names()
        super().__init__(f"lr-find does not apply to {name}: {reason}. It runs with {', '.join(self.works)}")


def lr_find_refusal(name: str) -> str | None:
    """Why the range test refuses registry row ``name`` (the first requirement it does not offer, in
    :data:`REFUSALS`' words), or ``None`` when it runs it."""
    from descentlab.optim.registry import get_spec

    missing = sorted(get_spec(name).requires - set(LR_FIND_OFFERS))
    return REFUSALS[missing[0]] if missing else None


def lr_findable_names() -> list[str]:
    """The registry rows the range test runs, in table order."""
    from descentlab.optim.registry import optimizer_names

    return [name for name in optimizer_names() if lr_find_refusal(name) is None]


def check_lr_findable(name: str) -> None:
    """Raise :class:`LRFindNotApplicable` for a registry row the range test refuses."""
    reason = lr_find_refusal(name)
    if reason is not None:
        raise LRFindNotApplicable(name, reason)


def registry_optimizer(name: str, options: dict[str, Any] | None = None) -> Callable[..., Any]:
    """``make(params, lr)`` for registry row ``name`` with ``options``, built as ``train`` builds it (a matrices-only
    row: the 2-D parameters to it, the others to AdamW); a row the range test refuses raises
    :class:`LRFindNotApplicable` here."""
    from descentlab.optim.registry import get_spec

    spec = get_spec(name)
    check_lr_findable(name)
    options = dict(options or {})

    def make(params: Iterable[Any], lr: float) -> Any:
        if "matrices" in spec.requires:
            from descentlab.train.partitioned import split_matrices

            return split_matrices(name, params, lr, options)
        return spec.build(params, lr=lr, **options)

    return make


def _refuse_unfit(optimizer: Any) -> None:
    """Refuse an optimizer built by a caller's factory that the range test cannot step: one that needs
    ``step(closure)`` (L-BFGS). (A caller's SparseAdam runs: its model may have sparse embeddings.)"""
    from descentlab.train.closure import needs_closure

    if needs_closure(optimizer):
        raise LRFindNotApplicable(type(optimizer).__name__, REFUSALS["closure"])


@dataclass
class LRFindResult:
    """Rates tried, raw and smoothed losses, the suggested rate and the rule that chose it."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    rule: str
    min_loss_lr: float
    extra: dict[str, Any] = field(default_factory=dict)

    def plot(self, path: str | os.PathLike, title: str = "") -> Any:
        """Smoothed (and raw) loss against the learning rate, log scale, suggestion marked."""
        from descentlab.outputs import new_figure, save_figure_atomically

        fig = new_figure(figsize=(7, 4))
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses, color="0.55", linewidth=0.8, label="mini-batch loss (raw)")
        window = self.extra.get("window")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", linewidth=2,
                label="smoothed without lag" + (f" (EMA over ≈ {window:.0f} steps, both ways)" if window else ""))
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggested η = {self.suggestion:.3g}")
        bottom = self.min_loss_lr * 10
        ax.axvline(bottom, color="tab:green", linestyle=":", label=f"lowest smoothed loss at η = {bottom:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate η (one mini-batch step at each)")
        ax.set_ylabel("loss")
        raw = np.asarray(self.losses)
        low = float(min(raw.min(), min(self.smoothed)))
        high = float(max(self.smoothed[0], np.percentile(raw, 95)))
        ax.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.1 * (high - low + 1e-12))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_title(title or "learning-rate range test")
        return save_figure_atomically(fig, path)

    def _repr_html_(self) -> str:
        """Inline display in notebooks: the loss-against-rate picture and the suggestion with a few rows."""
        from descentlab.train.history import notebook_html, picture_of

        step = max(1, len(self.lrs) // 12)
        rows = [[lr, loss, smooth] for lr, loss, smooth in
                list(zip(self.lrs, self.losses, self.smoothed))[::step]]
        return notebook_html(f"lr-find: suggested lr {self.suggestion:.3g} ({self.rule})", picture_of(self.plot),
                             ["lr", "loss", "smoothed"], rows, note=f"every {step}th of {len(self.lrs)} rates")

    def to_csv(self, path: str | os.PathLike) -> Any:
        """``lr,loss,smoothed`` rows, written atomically."""
        from descentlab.outputs import write_text_atomically

        rows = ["lr,loss,smoothed"] + [f"{a!r},{b!r},{c!r}" for a, b, c in zip(self.lrs, self.losses, self.smoothed)]
        return write_text_atomically(path, "\n".join(rows) + "\n")


def find_lr(setting: Any, *, data: Any = None, start_lr: float = 1e-6, end_lr: float = 10.0,
            steps: int = 100, rule: str = "minimum") -> LRFindResult:
    """The range test for a :class:`descentlab.lab.train_run.Setting`: its model (initial weights from its seed),
    optimizer with its options, task loss, batch mode and seed, on ``data`` (loaded from the setting if not given)."""
    from descentlab.lab.train_run import build_model
    from descentlab.train.losses import TASK_LOSS

    make = registry_optimizer(setting.optimizer, setting.options)  # refuses lbfgs, sparseadam before any loading
    data = data if data is not None else setting.load()
    model, _ = build_model(setting, data)
    return lr_find(model, data.train, make, loss=TASK_LOSS[data.task], start_lr=start_lr, end_lr=end_lr, steps=steps,
                   batch_size=setting.batch_size, seed=setting.seed, rule=rule)


def lr_find(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], make_optimizer: Callable[..., Any] | str, *,
            loss: str | LossFn, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100,
            batch_size: int | str = 64, beta: float | None = None, diverge_factor: float = 4.0, seed: int = 0,
            rule: str = "minimum") -> LRFindResult:
    """Run the range test on a copy of ``model``; ``make_optimizer(params, lr)`` builds the optimizer, or names a
    registry row (built as :func:`registry_optimizer` builds it, with the row's defaults).

    ``beta`` (default: ``1 − 1/w`` with a window ``w = max(2, steps // 25)``, 4 % of the sweep) smooths the
    loss; ``rule`` picks the suggestion (see :data:`RULES`). With several param groups (``muon``'s AdamW part
    included) group 0 takes the swept rate and the others keep their initial ratio to it, as ``fit``'s schedules;
    the rates reported and suggested are group 0's. An optimizer that needs ``step(closure)`` (L-BFGS), or a
    registry name the test refuses, raises :class:`LRFindNotApplicable` before any step."""
    if isinstance(make_optimizer, str):
        make_optimizer = registry_optimizer(make_optimizer)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if beta is None:
        beta = 1.0 - 1.0 / max(2, steps // 25)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an integer >= 10, got {steps!r}")
    if diverge_factor <= 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor!r}")
    loss_fn = get_loss(loss)
    model = copy.deepcopy(model)
    model.train()
    optimizer = make_optimizer(model.parameters(), lr=start_lr)
    _refuse_unfit(optimizer)
    base = [float(group["lr"]) for group in optimizer.param_groups]
    ratios = [b / base[0] if base[0] > 0 else 1.0 for b in base]  # 1.0 exactly for group 0 (and equal rates)
    batches = MiniBatches(data, batch_size, seed=seed)
    ratio = (end_lr / start_lr) ** (1.0 / (steps - 1))
    avg = EMA(beta)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    best = math.inf
    epoch, stream = 0, iter(batches.batches(0))
    for i in range(steps):
        lr = float(start_lr * ratio**i)
        for group, ratio_to_first in zip(optimizer.param_groups, ratios):
            rate = lr * ratio_to_first
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(rate)
            else:
                group["lr"] = rate
        try:
            x, y = next(stream)
        except StopIteration:
            epoch += 1
            stream = iter(batches.batches(epoch))
            x, y = next(stream)
        optimizer.zero_grad(set_to_none=True)
        value = loss_fn(model(x), y)
        current = value.item()
        if not math.isfinite(current):
            break
        value.backward()
        optimizer.step()
        s = float(avg.update(current))
        lrs.append(lr)
        losses.append(current)
        smoothed.append(s)
        best = min(best, s)
        if s > diverge_factor * best and i > 5:
            break
    if len(lrs) < 5:
        raise ValueError(f"the loss diverged within {len(lrs)} steps from start_lr={start_lr:g}; lower start_lr")
    smooth = zero_lag(np.asarray(losses), beta)
    suggestion, text, bottom = suggest(np.asarray(lrs), smooth, rule)
    min_loss_lr = bottom / 10
    return LRFindResult(lrs, losses, smooth.tolist(), suggestion, text, min_loss_lr,
                        {"stopped_early": len(lrs) < steps, "steps_run": len(lrs), "beta": beta,
                         "window": 1 / (1 - beta)})


def zero_lag(values: np.ndarray, beta: float) -> np.ndarray:
    """The loss smoothed without lag: the bias-corrected EMA run forwards, then backwards over the result
    (a causal EMA trails the raw loss by ≈ β/(1 − β) steps, i.e. by a fixed fraction of the sweep)."""
    def ema(x: np.ndarray) -> np.ndarray:
        out, v = np.empty_like(x, dtype=float), 0.0
        for t, value in enumerate(x, 1):
            v = beta * v + (1 - beta) * value
            out[t - 1] = v / (1 - beta**t)
        return out

    return ema(ema(values)[::-1])[::-1]


#: suggestion rules: ``minimum`` (the default; fastai's ``minimum``: the rate at the lowest smoothed loss,
#: divided by 10), ``steepest`` (Lightning's: the steepest fall against log η) and ``valley`` (fastai's
#: default: a little past the first third of the longest falling stretch). Measured on digits (logistic, MLP),
#: breast_cancer and wine with SGD, momentum, Adam and RMSProp at 100 and 500 steps (docs/lab.md), training at
#: ``minimum``'s rate came within 0.03 test accuracy of the best decade in 30 of 32 settings (within 0.06 in
#: all); ``steepest`` and ``valley`` missed by up to 0.57. tests/test_lab_lr_find.py checks the default.
RULES = ("minimum", "steepest", "valley")


def suggest(lrs: np.ndarray, smooth: np.ndarray, rule: str) -> tuple[float, str, float]:
    """``(suggested rate, the rule in words, the rate at the lowest smoothed loss)``."""
    upto = int(np.argmin(smooth)) + 1  # only the falling part counts
    bottom = float(lrs[upto - 1])
    if rule == "minimum" or upto < 3:
        return bottom / 10, f"the rate at the lowest smoothed loss ({bottom:.3g}) divided by 10", bottom
    falling = smooth[:upto]
    if rule == "steepest":
        slopes = np.gradient(falling, np.log10(lrs[:upto]))
        i = int(np.argmin(slopes))
        return float(lrs[i]), (f"steepest fall of the smoothed loss against log(lr) ({slopes[i]:.3g} per decade "
                               f"at lr {lrs[i]:.3g}), before its lowest point at lr {bottom:.3g}"), bottom
    # valley (fastai): the longest decreasing subsequence of the loss; the suggestion sits at half of its
    # middle third's start (index start + ⌊len/3⌋ + ⌊len/6⌋)
    n = len(smooth)
    run = np.ones(n, dtype=int)
    best_end = 0
    for i in range(1, n):
        lower = smooth[:i] > smooth[i]
        if lower.any():
            run[i] = int(run[:i][lower].max()) + 1
        if run[i] > run[best_end]:
            best_end = i
    start = best_end - int(run[best_end]) + 1
    sections = (best_end - start) / 3
    i = start + int(sections) + int(sections / 2)
    return float(lrs[i]), (f"fastai's valley: the longest falling stretch of the smoothed loss runs from lr "
                           f"{lrs[start]:.3g} to {lrs[best_end]:.3g}; the suggestion sits past its first third, at lr "
                           f"{lrs[i]:.3g}"), bottom
