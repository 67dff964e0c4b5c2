"""Race pictures: contour plot with every trajectory, and a log-scale f-vs-step panel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descentlab.lab.landscapes import Landscape
from descentlab.outputs import new_figure, save_figure_atomically

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def grid_values(landscape: Landscape, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X, Y, f(X, Y)`` on an ``n × n`` grid over the landscape's domain."""
    (x0, x1), (y0, y1) = landscape.domain
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    X, Y = np.meshgrid(xs, ys)
    with torch.no_grad():
        Z = landscape(torch.tensor(np.stack([X, Y], -1))).numpy()
    return X, Y, Z


def draw_contours(ax: Any, landscape: Landscape, n: int = 120) -> None:
    """Filled contours (log-spaced levels where f ≥ 0 everywhere), start-independent decorations."""
    X, Y, Z = grid_values(landscape, n)
    if Z.min() >= 0:
        levels = np.unique(np.geomspace(max(Z.min(), 1e-3) + 1e-3, Z.max() + 1e-3, 30) - 1e-3)
    else:
        levels = np.linspace(Z.min(), Z.max(), 30)
    ax.contourf(X, Y, Z, levels=levels, cmap="Greys", alpha=0.55)
    ax.contour(X, Y, Z, levels=levels, colors="0.5", linewidths=0.4)
    for i, (mx, my) in enumerate(landscape.minima):
        ax.plot(mx, my, marker="*", color="gold", markeredgecolor="k", markersize=14, zorder=5,
                label="known minima" if i == 0 else None)
    (x0, x1), (y0, y1) = landscape.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def race_figure(result: Any, path: str | os.PathLike, *, tuned: bool = False) -> Path:
    """Two panels: trajectories over the contours, and f − f* (log scale) per step."""
    racers = result.tuned if tuned else result.racers
    ls = result.landscape
    fig = new_figure(figsize=(13, 5.2))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    draw_contours(ax, ls)
    ax.plot(*result.start, marker="o", color="k", markersize=8, zorder=6, label="start")
    for colour, r in zip(COLOURS, racers):
        pts = r.points
        ax.plot(pts[:, 0], pts[:, 1], "-", color=colour, linewidth=1.4, label=r.label + (" ✗ diverged" if r.diverged else ""))
        ax.plot(pts[-1, 0], pts[-1, 1], "o", color=colour, markersize=4)
        offset = ls.f_star if ls.f_star is not None else np.nanmin([np.nanmin(x.values) for x in racers]) - 1e-12
        gap = np.maximum(r.values - offset, 1e-16)
        ax2.plot(np.arange(len(gap)), gap, color=colour, label=r.name)
        if getattr(r, "escaped_at", None) is not None:
            ax2.plot(r.escaped_at, gap[r.escaped_at], "v", color=colour, markersize=7)
    ax.set_title(f"{ls.name}: {ls.formula}\n{rates_title(racers, tuned)}", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=min(3, len(racers) + 2), fontsize=8,
               frameon=False)
    fig.subplots_adjust(bottom=0.13 + 0.045 * ((len(racers) + 2 + 2) // 3))
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("f − f*" if ls.f_star is not None else "f − (lowest f reached)")
    ax2.grid(alpha=0.3, which="both")
    ax2.set_title(f"{result.steps} steps" + (f", gradient noise σ = {result.noise:g}" if result.noise else "")
                  + ("; ▼ escaped the saddle" if ls.escape is not None else ""), fontsize=10)
    return save_figure_atomically(fig, path)


def rates_title(racers: list[Any], tuned: bool = False) -> str:
    """What was run, in words: registry defaults, rates the user gave, or tuned rates."""
    if tuned:
        return "each at its tuned rate (best of a 30-point log grid, judged from 3 starts)"
    given = [r for r in racers if getattr(r, "rate_given", False)]
    if not given:
        return "every optimizer at its registry default rate"
    if len(given) == len(racers):
        return "at the rates you set"
    return "registry default rates, except " + ", ".join(r.name for r in given) + " (set by you)"


def contour_background(landscape: Landscape, path: str | os.PathLike, size: tuple[int, int] = (600, 480)) -> Path:
    """Only the contours, edge to edge (no axes), for the interactive HTML race to draw on."""
    dpi = 100
    fig = new_figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    draw_contours(ax, landscape, n=160)
    ax.set_axis_off()
    return save_figure_atomically(fig, path, dpi=dpi, tight=False)
