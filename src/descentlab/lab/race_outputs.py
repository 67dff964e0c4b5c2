"""Everything a race writes into its folder: race.png, race.gif (and .mp4 with ffmpeg), metrics.csv,
report.html — atomically, never over an earlier race unless asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from descentlab.lab.animation import animate_race
from descentlab.lab.plots import contour_background, race_figure
from descentlab.lab.report import write_race_report
from descentlab.outputs import check_outputs, write_text_atomically
from descentlab.train.history import csv_text

OUTPUTS = ("race.png", "race_tuned.png", "race.gif", "race.mp4", "metrics.csv", "report.html")


def check_out(out: Path, force: bool) -> None:
    """Refuse to write over an earlier race's outputs unless ``force``."""
    check_outputs(out, OUTPUTS, force, "a race")


def write_race_outputs(result: Any, out: Path, *, force: bool = False, frames: int = 40,
                       title: str | None = None) -> dict[str, Path]:
    """Write the race's pictures, animation, metrics and report into ``out``; return the paths."""
    out = Path(out)
    check_out(out, force)
    out.mkdir(parents=True, exist_ok=True)
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


def format_table(result: Any) -> str:
    """The metrics as a plain-text table for the terminal."""
    lines = [f"{'optimizer':<10} {'lr':>9} {'tuned':>5} {'steps→tol':>9} {'final f':>11} {'min#':>4} {'dist':>9} {'diverged':>8}"]
    for r in result.rows():
        steps = "-" if r["steps_to_tol"] is None else str(r["steps_to_tol"])
        idx = "-" if r["nearest_minimum"] is None else str(r["nearest_minimum"])
        lines.append(f"{r['optimizer']:<10} {r['lr']:>9.3g} {('yes' if r['tuned'] else 'no'):>5} {steps:>9} "
                     f"{r['final_f']:>11.4g} {idx:>4} {r['distance']:>9.3g} {('yes' if r['diverged'] else 'no'):>8}")
    return "\n".join(lines)
