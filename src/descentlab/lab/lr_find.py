"""The learning-rate range test (Smith 2017): one short run with an exponentially increasing rate.

For steps ``i = 0 … n−1`` the rate is ``η_i = η_start · (η_end / η_start)^(i / (n − 1))``; the loss of
each mini-batch is smoothed with the bias-corrected EMA (β = 0.98 by default) and the run stops early
once the smoothed loss exceeds ``diverge_factor`` × its minimum. The suggestion is the rate at the
steepest descent of the smoothed loss against log η (the middle of the region where loss falls fastest);
the rate at the minimum smoothed loss divided by 10 is reported as well. The model and optimizer are
restored afterwards.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from descentlab.averaging import EMA
from descentlab.data.batches import MiniBatches
from descentlab.train.losses import LossFn, get_loss


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
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="mini-batch loss")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", label="smoothed (EMA, bias-corrected)")
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggested η = {self.suggestion:.3g}")
        ax.axvline(self.min_loss_lr, color="tab:green", linestyle=":", label=f"min-loss η / 10 = {self.min_loss_lr:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate η")
        ax.set_ylabel("loss")
        low, high = min(self.smoothed), self.smoothed[0]
        ax.set_ylim(low - 0.1 * (high - low + 1e-12), high + 0.5 * (high - low + 1e-12))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_title(title or "learning-rate range test")
        return save_figure_atomically(fig, path)

    def to_csv(self, path: str | os.PathLike) -> Any:
        """``lr,loss,smoothed`` rows, written atomically."""
        from descentlab.outputs import write_text_atomically

        rows = ["lr,loss,smoothed"] + [f"{a!r},{b!r},{c!r}" for a, b, c in zip(self.lrs, self.losses, self.smoothed)]
        return write_text_atomically(path, "\n".join(rows) + "\n")


def find_lr(setting: Any, *, data: Any = None, start_lr: float = 1e-6, end_lr: float = 10.0,
            steps: int = 100) -> LRFindResult:
    """The range test for a :class:`descentlab.lab.train_run.Setting`: its model (initial weights from its seed),
    optimizer with its options, task loss, batch mode and seed, on ``data`` (loaded from the setting if not given)."""
    from descentlab.lab.train_run import build_model
    from descentlab.optim.registry import get_spec
    from descentlab.train.losses import TASK_LOSS

    data = data if data is not None else setting.load()
    spec = get_spec(setting.optimizer)
    model, _ = build_model(setting, data)
    return lr_find(model, data.train, lambda params, lr: spec.build(params, lr=lr, **setting.options),
                   loss=TASK_LOSS[data.task], start_lr=start_lr, end_lr=end_lr, steps=steps,
                   batch_size=setting.batch_size, seed=setting.seed)


def lr_find(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], make_optimizer: Callable[..., Any], *,
            loss: str | LossFn, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100,
            batch_size: int | str = 64, beta: float = 0.98, diverge_factor: float = 4.0, seed: int = 0) -> LRFindResult:
    """Run the range test on a copy of ``model``; ``make_optimizer(params, lr)`` builds the optimizer."""
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
        for group in optimizer.param_groups:
            group["lr"] = lr
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
    log_lr = np.log10(lrs)
    curve = np.asarray(smoothed)
    upto = int(np.argmin(curve)) + 1  # only the falling part counts
    slopes = np.gradient(curve[:upto], log_lr[:upto]) if upto >= 3 else np.array([0.0])
    steepest = int(np.argmin(slopes)) if upto >= 3 else 0
    suggestion = lrs[steepest]
    min_loss_lr = lrs[upto - 1] / 10
    rule = ("steepest descent of the smoothed loss against log(lr) "
            f"(slope {slopes[steepest]:.3g} per decade at lr {suggestion:.3g}), before its minimum at lr {lrs[upto - 1]:.3g}")
    return LRFindResult(lrs, losses, smoothed, suggestion, rule, min_loss_lr,
                        {"stopped_early": len(lrs) < steps, "steps_run": len(lrs)})
