"""The race as an animation: a GIF always (Pillow), an MP4 too when ffmpeg is installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.lab.plots import COLOURS, draw_contours
from descentlab.outputs import atomic_path, new_figure


def animate_race(result: Any, path: str | os.PathLike, *, frames: int = 100, fps: int = 20, tuned: bool = False,
                 mp4: bool = True) -> list[Path]:
    """Write ``path`` (a GIF) and, when ffmpeg exists and ``mp4``, the same animation as MP4 beside it."""
    from descentlab.extras import require

    animation = require("matplotlib.animation", "the race animation")
    FFMpegWriter, FuncAnimation, PillowWriter = animation.FFMpegWriter, animation.FuncAnimation, animation.PillowWriter

    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    racers = result.tuned if tuned else result.racers
    # ≥ 640 px wide, the legend in its own fixed band below the axes (it never moves between frames)
    rows = (len(racers) + 1) // 2
    fig = new_figure(figsize=(8, 6.4 + 0.28 * rows), dpi=100)
    ax = fig.add_axes((0.09, 0.08 + 0.045 * rows, 0.88, 0.84 - 0.045 * rows))
    draw_contours(ax, result.landscape, n=100)
    ax.plot(*result.start, "ko", markersize=6)
    lines = [ax.plot([], [], "-", color=c, linewidth=1.8, label=r.label)[0] for c, r in zip(COLOURS, racers)]
    heads = [ax.plot([], [], "o", color=c, markersize=6)[0] for c, _ in zip(COLOURS, racers)]
    fig.legend(handles=lines, loc="lower center", ncol=2, fontsize=9, frameon=False)
    title = ax.set_title("")
    steps = np.unique(np.linspace(0, result.steps, frames).astype(int))

    def update(k: int):
        step = steps[k]
        for line, head, r in zip(lines, heads, racers):
            upto = min(step, len(r.points) - 1)
            line.set_data(r.points[: upto + 1, 0], r.points[: upto + 1, 1])
            head.set_data([r.points[upto, 0]], [r.points[upto, 1]])
        title.set_text(f"{result.landscape.name}: {result.landscape.formula} — step {step}")
        return lines + heads + [title]

    anim = FuncAnimation(fig, update, frames=len(steps), blit=False)
    path = Path(path)
    written = [path]
    with atomic_path(path) as tmp:
        anim.save(tmp, writer=PillowWriter(fps=fps))
    if mp4 and shutil.which("ffmpeg"):
        with atomic_path(path.with_suffix(".mp4")) as tmp:
            anim.save(tmp, writer=FFMpegWriter(fps=fps))
        written.append(path.with_suffix(".mp4"))
    return written
