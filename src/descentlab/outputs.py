"""One home for writing outputs: atomic files, output folders that never lose what a user made, and
matplotlib figures built as :class:`matplotlib.figure.Figure` objects.

* Every file is written to a temporary file beside its target and renamed over it (``os.replace`` is
  atomic), so a reader — or a run killed half-way — never sees a half-written file under the real name.
* The folder checks refuse to write over an earlier run unless asked (``force`` / ``resume``), and
  ``force`` only ever replaces descentlab's own outputs: files a user put there are left alone.
* Figures never go through pyplot and never call ``matplotlib.use``: a notebook user's backend, open
  figures and next ``plt.show()`` are untouched by anything the library draws.
"""

from __future__ import annotations

import os
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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def _refuse_a_file(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")


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
    if out.is_dir() and any(out.iterdir()) and not force and not (unless and unless(out)):
        raise FileExistsError(f"{out} is not empty; {hint}")


def prepare_run_folder(out: str | os.PathLike, ours: Callable[[Path], bool], *, resume: bool, force: bool) -> Path:
    """Refuse a non-empty output folder unless ``resume`` (continue the run there) or ``force`` (replace the
    outputs of an earlier run: only the entries ``ours(path)`` says descentlab wrote; a user's are left alone).
    Creates the folder."""
    out = Path(out)
    _refuse_a_file(out)
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing and not (resume or force):
        raise FileExistsError(f"{out} is not empty ({', '.join(existing[:5])}); pass --resume to continue the run "
                              "there or --force to replace it")
    if force and not resume:
        for target in [out / name for name in existing if ours(out / name)]:
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


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
