"""Argument types of the command line: every value is checked while parsing, and a bad one gives one line,
``descentlab VERB: error: argument --FLAG: must be …, got '…'``, naming the flag and the allowed values."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Callable, NoReturn

SEED_MAX = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_STEPS = 100_000


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``PROG: error: MESSAGE``, exit code 2), no usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]``."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number ``> low`` (``low_open``) or ``>= low``, and ``<= high``."""
    parts = [f"> {low:g}" if low_open else f">= {low:g}"] if low > -math.inf else []
    parts += [f"<= {high:g}"] if high < math.inf else []
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def folder(text: str) -> str:
    """A non-empty folder path (``--out ''`` would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"must be a folder path, got {text!r}")
    return text


def seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=integer(0, SEED_MAX), default=0, help=f"random seed, 0..{SEED_MAX} (default 0)")


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def rates(text: str | None, what: str, names: list[str]) -> dict[str, float]:
    """``NAME=X,…`` learning rates: each NAME one of ``names``, each X a finite number > 0."""
    from descentlab.lab.options import parse_pairs

    result: dict[str, float] = {}
    for name, value in parse_pairs(text, what).items():
        if name not in names:
            raise ValueError(f"{what}: {name!r} is not in the race; give rates for {', '.join(names)}")
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = math.nan
        if isinstance(value, bool) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{what} {name}: a learning rate must be a finite number > 0, got {value!r}")
        result[name] = rate
    return result


def batch_sizes(text: str) -> list[Any]:
    """``--batch-size``: full | auto | N, or a comma list of them."""
    from descentlab.data import check_batch_size

    sizes = []
    for part in text.split(","):
        part = part.strip()
        sizes.append(check_batch_size(part if part in ("full", "auto") else _as_batch_int(part)))
    return sizes


def _as_batch_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--batch-size: expected full, auto or a positive integer, got {text!r}") from None


def nproc_count(text: Any, oversubscribe: bool = False) -> int:
    """``--nproc``: 1 ≤ N ≤ the cores (× 8 with ``--oversubscribe``)."""
    high = cores() * (8 if oversubscribe else 1)
    try:
        nproc = int(text)
    except (TypeError, ValueError):
        nproc = 0
    if not 1 <= nproc <= high:
        limit = (f"{high} (8 x this machine's {cores()} cores)" if oversubscribe else
                 f"{high} (this machine's cores; --oversubscribe allows up to {8 * high})")
        raise ValueError(f"--nproc must be an integer >= 1 and <= {limit} (1: one process; N: N data-parallel "
                         f"processes on this machine), got {text!r}")
    return nproc
