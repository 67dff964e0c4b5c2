"""Checkpoints written atomically, the last N kept, the newest readable one found on resume.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed into
place (``os.replace`` is atomic), so a half-written file is never visible under a checkpoint's name; a write
that fails (a full disk) removes its temporary file and says which file it was writing.

Checkpoints are read with ``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists and dicts
only, so a file placed in a checkpoint folder can never run code (RNG states are stored as tensors and
lists for this). A file that does not load that way is skipped with a warning naming it, never counts
towards the ``keep_last`` newest, and when nothing in a folder that holds checkpoints loads, loading refuses.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
FORMAT = 2  # 2: RNG states as tensors and lists (weights_only), the run's configuration under "run"


class UnreadableCheckpoint(ValueError):
    """A file under a checkpoint's name that does not load with ``weights_only=True``."""


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    """The file name of the checkpoint taken after ``step`` optimizer steps."""
    return Path(folder) / f"checkpoint-{step:09d}.pt"


def step_of(path: str | os.PathLike) -> int:
    """The step number in a checkpoint's file name."""
    match = PATTERN.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named like a checkpoint (checkpoint-NNNNNNNNN.pt)")
    return int(match.group(1))


def write_error(err: BaseException, path: Path) -> OSError:
    """An :class:`OSError` that says what failed while writing ``path`` ("no space left on …" for a full disk;
    torch reports a full disk as a ``RuntimeError`` of its zip writer)."""
    full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full:
        try:
            full = shutil.disk_usage(path.parent).free < 1 << 20
        except OSError:
            pass
    if full:
        return OSError(errno.ENOSPC, f"no space left on the device of {path.parent} while writing {path.name}")
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
    return OSError(getattr(err, "errno", None) or errno.EIO, f"could not write {path}: {reason}")


def save_checkpoint(folder: str | os.PathLike, step: int, payload: dict[str, Any], keep_last: int = 3) -> Path:
    """Write ``payload`` atomically as the checkpoint of ``step`` and delete all but the ``keep_last`` newest
    of the checkpoints up to ``step`` (a file with a later step number is not this run's: it never pushes this
    run's checkpoints out)."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, step)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    ours = [p for p in list_checkpoints(folder) if step_of(p) <= step]
    for old in ours[:-keep_last]:
        old.unlink(missing_ok=True)
    remove_orphaned_temporaries(folder)
    return path


TEMPORARY = re.compile(r"^\.checkpoint-\d{9}\.pt\.(\d+)\.tmp$")


def remove_orphaned_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the half-written checkpoints of writers that died (killed mid-write: their process id, which the
    temporary file's name carries, no longer runs on this machine) and return them. A live writer's file stays."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = TEMPORARY.match(path.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process can have: kept, to be safe)
    return True


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.match(p.name))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """One checkpoint, loaded with ``weights_only=True`` (no code runs); :class:`UnreadableCheckpoint` naming
    the file when it does not load that way, ``ValueError`` when it has another format."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - anything that does not load safely is refused, never run
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableCheckpoint(f"{path} does not load as a checkpoint with weights_only=True (not loaded, "
                                   f"nothing in it was run): {first[:200]}") from None
    if not isinstance(payload, dict):
        raise UnreadableCheckpoint(f"{path} holds a {type(payload).__name__}, not a checkpoint")
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {payload.get('format')!r}; this descentlab reads {FORMAT}")
    payload["path"] = str(path)
    return payload


def load_latest_checkpoint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The newest checkpoint that loads, or None when the folder holds none. An unreadable one is skipped with
    a warning naming it; when there are checkpoints but none loads, ``ValueError`` says so."""
    skipped = []
    for path in reversed(list_checkpoints(folder)):
        try:
            return read_checkpoint(path)
        except UnreadableCheckpoint as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", stacklevel=2)
            skipped.append(path.name)
    if skipped:
        raise UnreadableCheckpoint(f"no checkpoint in {folder} loads ({', '.join(skipped)} skipped as unreadable); "
                                   "nothing to resume from — remove them to start over, or use another --out")
    return None
