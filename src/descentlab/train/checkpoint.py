"""Checkpoints written atomically, the last N kept, the newest readable one found on resume.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed into
place (``os.replace`` is atomic), so a half-written file is never visible under a checkpoint's name.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
FORMAT = 1


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    """The file name of the checkpoint taken after ``step`` optimizer steps."""
    return Path(folder) / f"checkpoint-{step:09d}.pt"


def save_checkpoint(folder: str | os.PathLike, step: int, payload: dict[str, Any], keep_last: int = 3) -> Path:
    """Write ``payload`` atomically as the checkpoint of ``step`` and delete all but the ``keep_last`` newest."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, step)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(folder)[:-keep_last]:
        old.unlink(missing_ok=True)
    remove_orphaned_temporaries(folder)
    return path


TEMPORARY = re.compile(r"^\.checkpoint-\d{9}\.pt\.(\d+)\.tmp$")


def remove_orphaned_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the half-written checkpoints of writers that died (killed mid-write: their process id, which the
    temporary file's name carries, no longer runs on this machine) and return them. A live writer's file stays."""
    removed = []
    for path in Path(folder).iterdir():
        match = TEMPORARY.match(path.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
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


def load_latest_checkpoint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The newest checkpoint that loads, or None. An unreadable one is skipped with a warning."""
    for path in reversed(list_checkpoints(folder)):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable file: fall back to the previous one
            warnings.warn(f"skipping unreadable checkpoint {path}: {err}", stacklevel=2)
            continue
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path} has checkpoint format {payload.get('format')!r}; this descentlab reads {FORMAT}")
        payload["path"] = str(path)
        return payload
    return None
