"""One home for writing outputs: atomic files, output folders that never lose what a user made, and
matplotlib figures built as :class:`matplotlib.figure.Figure` objects.

* Every file is written to a temporary file beside its target and renamed over it (``os.replace`` is
  atomic), so a reader — or a run killed half-way — never sees a half-written file under the real name.
* The folder checks refuse to write over an earlier run unless asked (``force`` / ``resume``), and
  ``force`` only ever replaces descentlab's own outputs: files a user put there are left alone. A replacing
  run writes into a staging folder beside the old outputs (:func:`staged`), which are swapped out only once
  the new run has succeeded: a run that fails or is killed leaves the earlier one as it was.
* While a verb writes a folder it holds an exclusive lock on it (:func:`folder_lock`, ``flock`` on
  ``.descentlab.lock``, which names the holder's pid): a second process is refused, and the lock of a process
  that died is free (the kernel drops it) and taken over.
* A full disk is reported as ``no space left on … while writing FILE``; temporary files are removed when a
  write fails and, when their writer died (a pid that no longer runs), by the next run in the folder.
* Figures never go through pyplot and never call ``matplotlib.use``: a notebook user's backend, open
  figures and next ``plt.show()`` are untouched by anything the library draws.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that pick the format by name still work);
    renamed over ``path`` when the block ends, removed when it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_full(path: str | os.PathLike) -> OSError:
    """The error of a write that ran out of space: ``no space left on the device of FOLDER while writing NAME``."""
    path = Path(path)
    return OSError(errno.ENOSPC, f"no space left on the device of {path.parent} while writing {path.name}")


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed to disk, and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, like :func:`write_bytes_atomically`."""
    return write_bytes_atomically(path, text.encode("utf-8"))


# --- output folders ------------------------------------------------------------------------------------


LOCK_NAME = ".descentlab.lock"
STAGING = re.compile(r"^\.descentlab-(new|old)-(\d+)$")
TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def internal(path: Path) -> bool:
    """Whether ``path`` is descentlab's bookkeeping (the lock, staging folders, temporary files), which never
    counts as an output and never makes a folder "not empty"."""
    name = path.name
    return name == LOCK_NAME or bool(STAGING.match(name)) or bool(TEMPORARY.match(name))


def _refuse_a_file(out: Path) -> None:
    if str(out).strip() == "":
        raise ValueError("--out must name a folder, got an empty string")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale(out: str | os.PathLike) -> list[Path]:
    """Clean up after writers of ``out`` that died (a pid that no longer runs): their temporary files are
    deleted; a staging folder of a run that never finished is deleted (the earlier outputs were never touched);
    a swap that was under way (its ``.descentlab-old-PID`` exists) is completed. Returns what was removed."""
    out = Path(out)
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    for path in sorted(out.iterdir()):
        staging, temporary = STAGING.match(path.name), TEMPORARY.match(path.name)
        pid = int(staging.group(2)) if staging else int(temporary.group(1)) if temporary else None
        if pid is None or _alive(pid) or not path.exists():
            continue
        if staging:
            new, old = out / f".descentlab-new-{pid}", out / f".descentlab-old-{pid}"
            if old.is_dir() and new.is_dir():  # killed mid-swap: the new run had succeeded, finish moving it in
                for entry in sorted(new.iterdir()):
                    target = out / entry.name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    os.replace(entry, target)
            for folder in (new, old):
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        else:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class FolderInUse(FileExistsError):
    """Another process holds the output folder's lock."""


@contextmanager
def folder_lock(out: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``out`` (created) for the block. Another live holder: raise
    :class:`FolderInUse` naming its pid; a lock left by a process that died is taken over. What dead writers
    left (temporary files, staging folders) is removed once the lock is held."""
    out = Path(out)
    _refuse_a_file(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUse(f"{out} is in use by another descentlab process (pid {holder}); wait for it to "
                              "finish or stop it, or choose another --out") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino  # not a lock file its last holder just removed
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} ({what})\n".encode())
    try:
        remove_stale(out)
        yield out
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def outputs_in(out: Path, ours: Callable[[Path], bool]) -> list[Path]:
    """The entries of ``out`` that ``ours`` says descentlab wrote (bookkeeping excluded)."""
    return sorted(p for p in out.iterdir() if not internal(p) and ours(p)) if out.is_dir() else []


@contextmanager
def staged(out: str | os.PathLike, ours: Callable[[Path], bool], *, last: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a fresh staging folder inside ``out`` to write a new run into; when the block succeeds, the
    entries of ``out`` that ``ours`` names are swapped out and the staged ones moved in (``last`` — e.g. a
    report marking a complete run — moved last), then the old ones deleted. When the block raises, the staging
    folder is removed and ``out`` is left exactly as it was."""
    out = Path(out)
    stage = out / f".descentlab-new-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out / f".descentlab-old-{os.getpid()}"
    old.mkdir(exist_ok=True)
    for entry in outputs_in(out, ours):
        os.replace(entry, old / entry.name)
    last = set(last)
    for entry in sorted(stage.iterdir(), key=lambda p: (p.name in last, p.name)):
        os.replace(entry, out / entry.name)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def check_outputs(out: str | os.PathLike, names: Iterable[str], force: bool, what: str) -> None:
    """Refuse to write over any of the outputs ``names`` already in ``out`` unless ``force``.
    ``what`` names them in the message (``"a race"`` → "… already holds a race (race.png); pass --force …")."""
    out = Path(out)
    _refuse_a_file(out)
    existing = [name for name in names if (out / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{out} already holds {what} ({', '.join(existing)}); pass --force to overwrite")


def check_empty(out: str | os.PathLike, force: bool = False, *, hint: str = "choose another --out or pass --force",
                unless: Callable[[Path], bool] | None = None) -> None:
    """Refuse a non-empty ``out`` unless ``force`` or ``unless(out)`` (e.g. it holds an earlier run to continue)."""
    out = Path(out)
    _refuse_a_file(out)
    if out.is_dir() and any(not internal(p) for p in out.iterdir()) and not force and not (unless and unless(out)):
        raise FileExistsError(f"{out} is not empty; {hint}")


def prepare_run_folder(out: str | os.PathLike, ours: Callable[[Path], bool], *, resume: bool, force: bool) -> bool:
    """Refuse a non-empty output folder unless ``resume`` (continue the run there) or ``force`` (replace the
    outputs of an earlier run: only the entries ``ours(path)`` says descentlab wrote; a user's are left alone).
    Creates the folder; nothing is removed here. Returns whether the run must be written beside the old
    outputs and swapped in on success (``force`` over existing outputs: see :func:`staged`)."""
    out = Path(out)
    _refuse_a_file(out)
    existing = sorted(p.name for p in out.iterdir() if not internal(p)) if out.is_dir() else []
    if existing and not (resume or force):
        raise FileExistsError(f"{out} is not empty ({', '.join(existing[:5])}); pass --resume to continue the run "
                              "there or --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    return bool(force and not resume and outputs_in(out, ours))


# --- figures -------------------------------------------------------------------------------------------


def new_figure(**kwargs: Any):
    """A :class:`matplotlib.figure.Figure` on its own Agg canvas — not registered with pyplot, so it never
    shows up in (or closes, or switches the backend of) a user's pyplot session; it is freed like any object."""
    from descentlab.extras import require

    figure = require("matplotlib.figure", "descentlab's pictures")
    agg = require("matplotlib.backends.backend_agg", "descentlab's pictures")
    fig = figure.Figure(**kwargs)
    agg.FigureCanvasAgg(fig)
    return fig


def save_figure_atomically(fig: Any, path: str | os.PathLike, *, dpi: int = 110, tight: bool = True) -> Path:
    """Write a figure to ``path`` (format from the suffix) through a temporary file and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", **({"bbox_inches": "tight"} if tight else {}))
    return path
