"""A progress bar (tqdm) with loss, learning rate and samples/s: on a terminal, and in a notebook as its widget.

The bar comes from ``tqdm.auto``: Jupyter's widget inside a notebook kernel (with ipywidgets; tqdm's text bar
in the cell's output without them), the text bar on a terminal. It stays silent elsewhere (a pipe, a log file,
a CI job). tqdm comes with ``pip install 'descentlab[lab]'``; without it training runs without a bar (one
warning).
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

from descentlab.extras import require


def in_notebook() -> bool:
    """Whether this runs inside a Jupyter (IPython) kernel."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def _bar(total: int, initial: int) -> Any:
    """tqdm.auto's bar; in a notebook without ipywidgets (tqdm's widget raises ImportError) the text bar."""
    require("tqdm", "the progress bar")  # missing: the one-line ImportError, a warning in Progress
    notebook = in_notebook()
    kwargs = dict(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=notebook)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tqdm.auto's TqdmExperimentalWarning outside notebooks
            auto = require("tqdm.auto", "the progress bar")
        return auto.tqdm(**kwargs)
    except ImportError:  # the notebook widget needs ipywidgets
        return require("tqdm", "the progress bar").tqdm(file=sys.stderr, **kwargs)


class Progress:
    """Shows a tqdm bar on a terminal or in a notebook when ``enabled``; otherwise does nothing (no output)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True) -> None:
        self._bar = None
        self._last = 0.0
        if enabled and (sys.stderr.isatty() or in_notebook()):
            try:
                self._bar = _bar(total, initial)
            except ImportError as missing:  # training goes on without a bar; say so once
                warnings.warn(str(missing), stacklevel=2)
                return

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
