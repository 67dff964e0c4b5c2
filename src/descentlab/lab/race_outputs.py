"""Everything a race writes into its folder: race.png, race.gif (and .mp4 with ffmpeg), metrics.csv,
report.html — into a staging folder that is swapped in once everything is written (report.html last), never
over an earlier race unless asked. A folder holding race outputs but no report.html is a race that was killed
while writing: it is recognised and replaced by the same command, without ``--force``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from descentlab.lab.animation import animate_race
from descentlab.lab.plots import contour_background, race_figure
from descentlab.lab.report import write_race_report
from descentlab.outputs import check_outputs, outputs_in, staged, write_text_atomically
from descentlab.train.history import csv_text

OUTPUTS = ("race.png", "race_tuned.png", "race.gif", "race.mp4", "metrics.csv", "report.html")


def ours(path: Path) -> bool:
    """Whether ``path`` is one of a race's outputs."""
    return path.name in OUTPUTS


def check_out(out: Path, force: bool) -> None:
    """Refuse to write over an earlier complete race's outputs unless ``force`` (a half-written one, without
    its report.html, is replaced)."""
    out = Path(out)
    check_outputs(out, OUTPUTS if (out / "report.html").exists() else (), force, "a race")


def write_race_outputs(result: Any, out: Path, *, force: bool = False, frames: int = 40,
                       title: str | None = None) -> dict[str, Path]:
    """Write the race's pictures, animation, metrics and report into ``out``; return the paths. Everything is
    written into a staging folder first and swapped in at the end (an earlier race's outputs go then)."""
    out = Path(out)
    check_out(out, force)
    out.mkdir(parents=True, exist_ok=True)
    with staged(out, ours, last=("report.html",)) as stage:
        written = _write(result, stage, frames, title)
    return {name: out / path.name for name, path in written.items()}


def half_written(out: Path) -> bool:
    """Whether ``out`` holds the outputs of a race killed while writing them (no report.html)."""
    return bool(outputs_in(Path(out), ours)) and not (Path(out) / "report.html").exists()


def _write(result: Any, out: Path, frames: int, title: str | None) -> dict[str, Path]:
    paths = {"race.png": race_figure(result, out / "race.png")}
    pictures = {"default rates: trajectories and f per step": paths["race.png"]}
    if result.tuned:
        paths["race_tuned.png"] = race_figure(result, out / "race_tuned.png", tuned=True)
        pictures["tuned rates: trajectories and f per step"] = paths["race_tuned.png"]
    written = animate_race(result, out / "race.gif", frames=frames, tuned=bool(result.tuned))
    for p in written:
        paths[p.name] = p
    pictures["animation" + (" (tuned rates)" if result.tuned else "")] = written[0]
    paths["metrics.csv"] = write_text_atomically(out / "metrics.csv", csv_text(result.rows()))
    background = out / ".background.png"
    contour_background(result.landscape, background)
    try:
        paths["report.html"] = write_race_report(result, out / "report.html", pictures=pictures,
                                                 background=background, title=title)
    finally:
        background.unlink(missing_ok=True)
    return paths


COLUMNS = (("optimizer", "optimizer"), ("lr", "learning rate"), ("tuned", "rate"), ("steps_to_tol", "reached tol at step"),
           ("settled_at_step", "settled at step"), ("final_f", "final f"), ("nearest_minimum", "nearest minimum (x, y)"),
           ("distance", "distance to it"), ("stuck_in_local_minimum", "stuck in a local minimum"),
           ("escaped_at_step", "escaped the saddle at step"), ("diverged", "diverged"),
           ("evaluations_to_tol", "f, ∇f evaluations to tol"), ("evaluations", "f, ∇f evaluations"))


def cell(key: str, value: Any) -> str:
    """One metric in words: steps, "never", "yes"/"no", "tuned"/"default"/"given"."""
    if key == "tuned":
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—" if key in ("nearest_minimum",) else "never"
    if isinstance(value, float):
        return "∞" if value == float("inf") else f"{value:.4g}"
    return str(value)


def table_rows(result: Any) -> tuple[list[str], list[list[str]]]:
    """Headers and rows in words (the escape column only on landscapes with a saddle)."""
    columns = [c for c in COLUMNS if c[0] != "escaped_at_step" or result.landscape.escape is not None]
    racers = result.racers + result.tuned
    rows = []
    for racer in racers:
        row = racer.row()
        row["tuned"] = "tuned" if racer.tuned else ("given" if racer.rate_given else "default")
        rows.append([cell(k, row[k]) for k, _ in columns])
    return [h for _, h in columns], rows


def notes(result: Any) -> list[str]:
    """What the table's steps mean for racers whose step is not one gradient evaluation (L-BFGS through a
    closure): one line per such racer, with its ``max_iter`` and ``max_eval``."""
    import torch

    from descentlab.optim.registry import get_spec

    lines = []
    for racer in result.racers + result.tuned:
        spec = get_spec(racer.optimizer or racer.name.partition("@")[0])
        if "closure" not in spec.requires:
            continue
        group = spec.build([torch.zeros(1, requires_grad=True)], **racer.options).defaults
        lines.append(f"{racer.name}{' (tuned)' if racer.tuned else ''}: one step is up to max_iter = "
                     f"{group['max_iter']} L-BFGS iterations, up to max_eval = {group['max_eval']} evaluations of f and "
                     f"∇f (a gradient method makes one per step); {racer.evaluations} in {len(racer.points) - 1} steps "
                     "— compare the evaluation columns, not the steps")
    return list(dict.fromkeys(lines))


def format_table(result: Any) -> str:
    """The metrics as a plain-text table for the terminal, in words, and the :func:`notes` below it."""
    headers, rows = table_rows(result)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers)] + [line(r) for r in rows] + [f"note: {n}" for n in notes(result)])
