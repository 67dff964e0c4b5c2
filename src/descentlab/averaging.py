"""Exponentially weighted (moving) averages with bias correction: of numbers, series and model weights.

With ``v₀ = 0``::

    v_t = β v_{t−1} + (1 − β) θ_t          bias-corrected:  v̂_t = v_t / (1 − βᵗ)

It averages roughly the last ``1/(1 − β)`` values (β = 0.9 → 10, 0.98 → 50, 0.5 → 2) and needs one
number (or tensor) of memory. Without correction the first values are biased towards 0: with β = 0.98
and daily temperatures 40, 49, 45 °F, ``v₂ = 1.764`` but ``v̂₂ = 1.764 / 0.0396 ≈ 44.55``.
The correction factor ``1 − βᵗ`` is computed once, in float64 (:func:`descentlab.rules.common.bias_correction`).
"""

from __future__ import annotations

import contextlib
import copy
import numbers
from typing import Any, Iterator

import numpy as np
import torch

from descentlab.rules.common import bias_correction as correction_factor

__all__ = ["EMA", "WeightEMA", "ema"]


def _check_beta(beta: Any) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    return float(beta)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_start(start: Any) -> str:
    if not isinstance(start, str) or start not in EMA_STARTS:
        raise ValueError(f"start must be one of {', '.join(repr(s) for s in EMA_STARTS)}; got {start!r}")
    return start


def _check_correction(bias_correction: Any, start: str) -> bool:
    """``None`` → True for ``start="zero"``, False for ``"first"``; a True with ``"first"`` is refused."""
    if bias_correction is None:
        return start == "zero"
    _check_bool("bias_correction", bias_correction)
    if bias_correction and start == "first":
        raise ValueError("bias_correction=True needs start='zero': an average that starts at the first weights "
                         "has no bias towards 0 to correct")
    return bool(bias_correction)


class EMA:
    """A running exponentially weighted average of numbers or tensors.

    >>> avg = EMA(0.98)
    >>> [round(avg.update(x), 2) for x in (40.0, 49.0, 45.0)]
    [40.0, 44.55, 44.7]
    >>> round(avg.window, 6)
    50.0
    """

    def __init__(self, beta: float, *, bias_correction: bool = True) -> None:
        self.beta = _check_beta(beta)
        self.bias_correction = _check_bool("bias_correction", bias_correction)
        self.count = 0
        self._raw: float | torch.Tensor = 0.0

    @property
    def window(self) -> float:
        """The effective number of values averaged, ``1 / (1 − β)``."""
        return 1.0 / (1.0 - self.beta)

    @property
    def raw(self) -> float | torch.Tensor:
        """The uncorrected average ``v_t``."""
        return self._raw

    @property
    def value(self) -> float | torch.Tensor:
        """The current average (bias-corrected if asked); raises before the first update."""
        if self.count == 0:
            raise ValueError("EMA has no value yet: call update(x) first")
        if not self.bias_correction:
            return self._raw
        return self._raw / correction_factor(self.beta, self.count)

    def update(self, x: float | torch.Tensor) -> float | torch.Tensor:
        """Fold ``x`` into the average and return :attr:`value`."""
        if isinstance(x, torch.Tensor):
            x = x.detach()
            if not (x.is_floating_point() or x.is_complex()):
                x = x.to(torch.get_default_dtype())
            self._raw = self.beta * self._raw + (1.0 - self.beta) * x
        else:
            if isinstance(x, bool) or not isinstance(x, numbers.Real):
                raise ValueError(f"EMA.update takes a real number or a tensor, got {x!r}")
            if isinstance(self._raw, torch.Tensor):
                raise ValueError("EMA.update: this EMA averages tensors; got a number")
            self._raw = self.beta * self._raw + (1.0 - self.beta) * float(x)
        self.count += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the average."""
        raw = self._raw.clone() if isinstance(self._raw, torch.Tensor) else self._raw
        return {"beta": self.beta, "bias_correction": self.bias_correction, "count": self.count, "raw": raw}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue an average saved by :meth:`state_dict`."""
        missing = {"beta", "bias_correction", "count", "raw"} - set(state)
        if missing:
            raise ValueError(f"not an EMA state_dict: missing {sorted(missing)}")
        self.beta = _check_beta(state["beta"])
        self.bias_correction = _check_bool("bias_correction", state["bias_correction"])
        self.count = int(state["count"])
        self._raw = state["raw"]


def ema(series: Any, beta: float, *, bias_correction: bool = True) -> Any:
    """The whole averaged series at once, equal to updating :class:`EMA` value by value.

    Vectorised along the first axis by a doubling scan in float64 (:func:`_ema_recurrence`: stable for
    any length, no ``β^{−t}`` overflow); a non-finite value carries on as it does value by value (a NaN
    stays NaN, an inf stays inf). A list gives a list, a NumPy array an array, a tensor a tensor (same
    dtype and device; computed in float64).

    >>> [round(v, 3) for v in ema([40, 49, 45], 0.98, bias_correction=False)]
    [0.8, 1.764, 2.629]
    """
    beta = _check_beta(beta)
    _check_bool("bias_correction", bias_correction)
    kind = "tensor" if isinstance(series, torch.Tensor) else "numpy" if isinstance(series, np.ndarray) else "list"
    if kind == "tensor":
        x = series.detach().to("cpu", torch.float64).numpy()
    else:
        x = np.asarray(series, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("series must be one-dimensional (or more), got a scalar")
    out = _ema_recurrence(x, beta)
    if bias_correction and len(x):
        t = np.arange(1, len(x) + 1, dtype=np.float64)
        factors = np.asarray(correction_factor(beta, t))  # 1 − βᵗ in float64, the one shared definition
        out = out / factors.reshape((-1,) + (1,) * (x.ndim - 1))
    if kind == "tensor":
        return torch.from_numpy(out).to(device=series.device, dtype=series.dtype if series.is_floating_point()
                                         else torch.get_default_dtype())
    if kind == "numpy":
        return out
    return out.tolist()


def _ema_recurrence(x: np.ndarray, beta: float) -> np.ndarray:
    """``v_t = β v_{t−1} + (1 − β) x_t`` from ``v_0 = 0`` along axis 0 of a float64 array, uncorrected.

    A Hillis–Steele doubling scan: start from ``v = (1 − β) x``; the pass with stride ``k = 1, 2, 4, …``
    adds ``βᵏ · v[t − k]`` to ``v[t]``, after which ``v[t]`` sums the last ``2k`` terms
    ``β^{t−i} (1 − β) x_i`` — so after ⌈log₂ n⌉ passes (fewer once ``βᵏ`` underflows to 0, when the older
    terms can no longer count) it holds the whole sum. Every product is of a term with a power of
    ``β ≤ 1``, so nothing overflows at any length (a closed form through cumulative sums of ``β^{−t}``
    does), and each output is a tree sum of depth ~log₂ n: its rounding error stays at a few ulps of the
    average of ``|x|`` — as small as the value-by-value loop's, smaller for β near 1 (measured against
    an 80-bit reference on a million points). It is not bit-identical to the loop.

    Non-finite inputs follow the loop: the scan runs on them as zeros, then from the first NaN / inf on
    the result is the running sum of the non-finite values (inf stays inf, inf + −inf or a NaN is NaN);
    with β = 0 the loop's ``0 · inf`` makes everything after a non-finite value NaN, and so does this.
    """
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    v = (1.0 - beta) * (x if all_finite else np.where(finite, x, 0.0))
    n, k = x.shape[0], 1
    while k < n:
        step = beta**k
        if step == 0.0:
            break
        v[k:] += step * v[:-k]  # the right side is a new array, so this reads the previous pass's v
        k *= 2
    if not all_finite:
        if beta == 0.0:
            after = np.logical_or.accumulate(~finite, axis=0)
            after[1:], after[0] = after[:-1].copy(), False  # strictly after a non-finite value
            v = np.where(after, np.nan, np.where(finite, v, x))
        else:
            with np.errstate(invalid="ignore"):  # inf + −inf → NaN is the point here, not a mistake
                carried = np.cumsum(np.where(finite, 0.0, x), axis=0)  # 0 until the first NaN / inf
            v = np.where(carried == 0.0, v, carried)
    return v


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision weights, otherwise the weights' own dtype."""
    return torch.promote_types(dtype, torch.float32)


#: ``WeightEMA(start=…)``: the average starts at ``"zero"`` (bias-corrected) or at the ``"first"`` weights.
EMA_STARTS: tuple[str, ...] = ("zero", "first")


class WeightEMA:
    """An exponentially weighted average of a model's parameters and floating-point buffers.

    Call :meth:`update` after each ``optimizer.step()``. With ``θ_t`` the weights at the t-th update::

        start="zero" (default):  v_0 = 0,    v_t = β v_{t−1} + (1 − β) θ_t,   average v_t / (1 − βᵗ)
                                 (bias_correction=False: v_t itself)
        start="first":           v_1 = θ_1,  v_t = β v_{t−1} + (1 − β) θ_t,   average v_t (no correction)

    The default starts at **zero** and is bias-corrected, so early on it is a proper weighted mean of the
    weights seen. ``start="first"`` is how Keras's ``use_ema=True`` (``ema_momentum`` = β) and
    ``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(β))`` (and ``torch_ema``)
    compute it: the average starts *at the first weights* — no correction needed, but those weights keep weight
    β^(t−1) forever; ``bias_correction`` must then be False (its default there).
    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are neither averaged nor copied: they
    keep their live values. The average is kept in at least float32 (a bfloat16 / float16 model's
    ``β·v`` would round back to ``v`` for β close to 1 and never move) and cast to each tensor's
    dtype when copied into a model.

    >>> model = torch.nn.Linear(2, 1)
    >>> averaged = WeightEMA(model, beta=0.9)
    >>> averaged.update()
    >>> with averaged.average_parameters():
    ...     pass  # evaluate here with the averaged weights; the live ones come back on exit
    """

    def __init__(self, model: torch.nn.Module, beta: float = 0.999, *, bias_correction: bool | None = None,
                 start: str = "zero") -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.beta = _check_beta(beta)
        self.start = _check_start(start)
        self.bias_correction = _check_correction(bias_correction, self.start)
        self.count = 0
        self._raw = {name: torch.zeros_like(t, dtype=_accumulator_dtype(t.dtype))
                     for name, t in self._tracked().items() if t.is_floating_point()}

    def _tracked(self) -> dict[str, torch.Tensor]:
        named: dict[str, torch.Tensor] = dict(self.model.named_parameters())
        named.update(dict(self.model.named_buffers()))
        return named

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average."""
        first = self.start == "first" and self.count == 0
        for name, t in self._tracked().items():
            if name in self._raw:
                if first:
                    self._raw[name].copy_(t.detach())
                else:
                    self._raw[name].mul_(self.beta).add_(t.detach(), alpha=1.0 - self.beta)
        self.count += 1

    @torch.no_grad()
    def averaged(self) -> dict[str, torch.Tensor]:
        """New tensors holding the averaged weights (bias-corrected if asked), in the accumulator's dtype
        (float32 for half-precision weights, else the weights' own)."""
        if self.count == 0:
            raise ValueError("WeightEMA has no average yet: call update() after an optimizer step first")
        c = correction_factor(self.beta, self.count) if self.bias_correction else 1.0
        return {name: raw / c for name, raw in self._raw.items()}

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module | None = None) -> None:
        """Write the averaged weights into ``model`` (by default the tracked one)."""
        model = self.model if model is None else model
        target: dict[str, torch.Tensor] = dict(model.named_parameters())
        target.update(dict(model.named_buffers()))
        averaged = self.averaged()
        missing = set(averaged) - set(target)
        if missing:
            raise ValueError(f"copy_to: the model has no tensors named {sorted(missing)}")
        for name, value in averaged.items():
            target[name].copy_(value)

    @contextlib.contextmanager
    def average_parameters(self) -> Iterator[torch.nn.Module]:
        """Evaluate the model with the averaged weights inside the block; the live ones are restored on exit."""
        live = {name: t.detach().clone() for name, t in self._tracked().items() if name in self._raw}
        self.copy_to()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                tracked = self._tracked()
                for name, value in live.items():
                    tracked[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the average."""
        return {"beta": self.beta, "bias_correction": self.bias_correction, "start": self.start,
                "count": self.count, "raw": {k: v.clone() for k, v in self._raw.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue an average saved by :meth:`state_dict` (tensor names and shapes must match; a state_dict
        without ``start``, saved before the option existed, is a zero-start average)."""
        missing = {"beta", "bias_correction", "count", "raw"} - set(state)
        if missing:
            raise ValueError(f"not a WeightEMA state_dict: missing {sorted(missing)}")
        if set(state["raw"]) != set(self._raw):
            raise ValueError(f"WeightEMA state_dict tracks {sorted(state['raw'])}, the model has {sorted(self._raw)}")
        for name, value in state["raw"].items():
            if value.shape != self._raw[name].shape:
                raise ValueError(f"WeightEMA state_dict: {name} has shape {tuple(value.shape)}, "
                                 f"the model's is {tuple(self._raw[name].shape)}")
        self.beta = _check_beta(state["beta"])
        self.start = _check_start(state.get("start", "zero"))
        self.bias_correction = _check_correction(state["bias_correction"], self.start)
        self.count = int(state["count"])
        self._raw = {k: copy.deepcopy(v).to(device=self._raw[k].device, dtype=self._raw[k].dtype)
                     for k, v in state["raw"].items()}
