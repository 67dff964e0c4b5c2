"""A progress bar (tqdm) with loss, learning rate and samples/s; silent when not on a terminal.

tqdm comes with ``pip install 'descentlab[lab]'``; without it training runs without a bar (one warning).
"""

from __future__ import annotations

import sys
import time
import warnings

from descentlab.extras import require


class Progress:
    """Shows a tqdm bar on a terminal when ``enabled``; otherwise does nothing (no output at all)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True) -> None:
        self._bar = None
        self._last = 0.0
        if enabled and sys.stderr.isatty():
            try:
                tqdm = require("tqdm", "the progress bar").tqdm
            except ImportError as missing:  # training goes on without a bar; say so once
                warnings.warn(str(missing), stacklevel=2)
                return
            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)

    def update(self, loss: float, lr: float, samples: int, seconds: float) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        now = time.monotonic()
        if now - self._last > 0.2:  # refresh the text a few times a second, not every step
            self._last = now
            rate = samples / seconds if seconds > 0 else 0.0
            self._bar.set_postfix_str(f"loss {loss:.4g}  lr {lr:.3g}  {rate:,.0f} samples/s", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
