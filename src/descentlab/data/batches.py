"""Mini-batches: one update rule, three algorithms.

``batch_size="full"`` is batch gradient descent (every sample in every step: smooth but slow steps),
``1`` is stochastic gradient descent (one sample: fast, noisy, no vectorisation), an integer is
mini-batch gradient descent (the practical choice). ``"auto"`` is resolved by
:func:`descentlab.data.suggest_batch_size` before batches are drawn.

Order: every epoch is a fresh permutation drawn from a generator seeded with ``(seed, epoch)``, so
the order of any epoch is a pure function of the seed and the epoch number — which is what makes a
resumed run exact. Last-partial-batch policy: the last batch of an epoch holds the remainder
(``n mod batch_size`` samples) and is kept, unless ``drop_last=True``.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Dataset, default_collate

BATCH_MODES: tuple[str, ...] = ("full", "auto")


def check_batch_size(batch_size: Any, n: int | None = None) -> int | str:
    """Validate ``"full"``, ``"auto"`` or a positive integer (≤ ``n`` when ``n`` is known)."""
    if isinstance(batch_size, str):
        if batch_size not in BATCH_MODES:
            raise ValueError(f"batch_size must be 'full', 'auto' or a positive integer, got {batch_size!r}")
        return batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be 'full', 'auto' or a positive integer, got {batch_size!r}")
    if n is not None and int(batch_size) > n:
        raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} samples); use 'full' for batch GD")
    return int(batch_size)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The sample order of ``epoch``: a permutation seeded by ``(seed, epoch)``, or ``0..n−1``."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=gen)


class MiniBatches:
    """Iterate ``data`` — a tensor, a tuple of tensors sharing the first dimension, or a map-style
    ``torch.utils.data.Dataset`` — in batches of ``batch_size`` (``"full"`` or an integer).

    ``batches(epoch, start=k)`` yields the epoch's batches from the ``k``-th on (for resuming).
    """

    def __init__(self, data: Any, batch_size: int | str, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        if isinstance(data, torch.Tensor):
            data = (data,)
        if isinstance(data, (tuple, list)):
            if not data or not all(isinstance(t, torch.Tensor) for t in data):
                raise ValueError("data must be a tensor, a tuple of tensors or a torch Dataset")
            n = len(data[0])
            if any(len(t) != n for t in data):
                raise ValueError(f"all tensors in data must share the first dimension, got {[len(t) for t in data]}")
            self._tensors: Sequence[torch.Tensor] | None = tuple(data)
            self._dataset: Dataset | None = None
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            n = len(data)
            self._tensors, self._dataset = None, data
        else:
            raise ValueError(f"data must be a tensor, a tuple of tensors or a sized torch Dataset, got {type(data).__name__}")
        if n == 0:
            raise ValueError("data is empty")
        size = check_batch_size(batch_size, n)
        if size == "auto":
            raise ValueError("resolve batch_size='auto' with suggest_batch_size() before building MiniBatches")
        self.n = n
        self.batch_size = n if size == "full" else int(size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), bool(drop_last)

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of ``epoch`` in order, beginning with batch number ``start``."""
        order = epoch_order(self.n, self.seed, epoch, self.shuffle)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self._tensors is not None:
                yield tuple(t[idx] for t in self._tensors)
            else:
                assert self._dataset is not None  # one of the two is set in __init__
                batch = default_collate([self._dataset[int(i)] for i in idx])
                yield tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
