"""The comparison report: CSV / JSON of every trial and every run, PNG curves with seed bands and a
performance profile, and one self-contained HTML page (no network needed)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.outputs import new_figure, write_bytes_atomically, write_text_atomically
from descentlab.train.history import csv_text


def performance_profile(costs: dict[str, list[float]], taus: np.ndarray) -> dict[str, np.ndarray]:
    """Dolan & Moré's profile: for each optimizer, the fraction of problems (here: seeds) it solves within a
    factor τ of the best optimizer on that problem. ``inf`` marks an unsolved problem."""
    names = list(costs)
    table = np.array([costs[n] for n in names], dtype=float)  # optimizers × problems
    best = np.min(table, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(np.isfinite(table), table / best, np.inf)
    return {n: np.array([(ratios[i] <= t).mean() for t in taus]) for i, n in enumerate(names)}


def _figures(result) -> tuple[Any, Any]:
    cfg = result.config
    metric = "val_accuracy" if any(r["epochs"] and "val_accuracy" in r["epochs"][0]
                                   for runs in result.runs.values() for r in runs) else "val_loss"
    curves = new_figure(figsize=(7.5, 4.2))
    ax = curves.subplots()
    for name, runs in result.runs.items():
        series = [[row[metric] for row in r["epochs"]] for r in runs if not r["diverged"]]
        if not series:
            continue
        arr = np.array(series)
        epochs = np.arange(1, arr.shape[1] + 1)
        line, = ax.plot(epochs, arr.mean(axis=0), label=f"{name} (lr {result.best[name]['lr']:.3g})")
        ax.fill_between(epochs, arr.min(axis=0), arr.max(axis=0), color=line.get_color(), alpha=0.2)
    if cfg.target and cfg.target[0] == metric:
        ax.axhline(cfg.target[1], color="k", linestyle=":", label=f"target {metric} = {cfg.target[1]:g}")
    ax.set_xlabel("epoch (the last one may be partial under a time budget)")
    ax.set_ylabel(metric + " (mean, band = min..max over seeds)")
    if metric == "val_loss":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{cfg.dataset} · {cfg.model}: tuned optimizers, {cfg.seeds} seeds")

    costs = {}
    for name, runs in result.runs.items():
        if cfg.target:
            costs[name] = [r["steps_to_target"] if (not r["diverged"] and r["steps_to_target"]) else math.inf
                           for r in runs]
        else:
            costs[name] = [r["best_val_loss"] if not r["diverged"] else math.inf for r in runs]
    taus = np.logspace(0, 1, 60)
    profile = performance_profile(costs, taus)
    prof = new_figure(figsize=(6, 4))
    ax2 = prof.subplots()
    for name, frac in profile.items():
        ax2.step(taus, frac, where="post", label=name)
    ax2.set_xscale("log")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("τ (within a factor τ of the best optimizer on that seed)")
    ax2.set_ylabel("fraction of seeds")
    ax2.set_title("performance profile: " + ("steps to target" if cfg.target else "best validation loss"))
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    return curves, prof


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def write_report(result, out: Path) -> None:
    """Write trials.csv, runs.csv, summary.json, curves.png, profile.png and report.html into ``out``."""
    runs_rows = []
    for name, runs in result.runs.items():
        for seed, r in enumerate(runs):
            for row in r["epochs"]:
                runs_rows.append({"optimizer": name, "seed": seed, **row})
            if r["diverged"]:
                runs_rows.append({"optimizer": name, "seed": seed, "diverged": True})
    summary = result.summary()
    write_text_atomically(out / "trials.csv", csv_text(result.trials))
    write_text_atomically(out / "runs.csv", csv_text(runs_rows))
    write_text_atomically(out / "summary.json", json.dumps({"config": asdict(result.config), "summary": summary,
                                                             "best": result.best}, indent=1, default=str))
    curves, prof = _figures(result)
    images = {}
    for fig, name in ((curves, "curves.png"), (prof, "profile.png")):
        data = _png_bytes(fig)
        write_bytes_atomically(out / name, data)
        images[name] = base64.b64encode(data).decode()
    write_text_atomically(out / "report.html", _html(result, summary, images))


def _html(result, summary: list[dict[str, Any]], images: dict[str, str]) -> str:
    cfg = result.config
    head = ["optimizer", "best setting", "test metric (mean ± std)", "diverged", "reached target",
            "median steps to target", "median s to target", "f, ∇f evaluations per step"]
    rows = []
    for s in summary:
        setting = ", ".join(f"{k[5:]}={v:.3g}" if isinstance(v, float) else f"{k[5:]}={v}"
                            for k, v in s.items() if k.startswith("best_"))
        steps = "—" if s["median_steps_to_target"] is None else f"{s['median_steps_to_target']:.0f}"
        secs = "—" if s["median_seconds_to_target"] is None else f"{s['median_seconds_to_target']:.2f}"
        rows.append([s["optimizer"], setting, f"{s['metric']} {s['mean']:.4f} ± {s['std']:.4f}",
                     f"{s['diverged']}/{s['seeds']}", f"{s['reached_target']}/{s['seeds']}", steps, secs,
                     "—" if s.get("evaluations_per_step") is None else f"{s['evaluations_per_step']:.3g}"])
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows) + "</table>"
    target = f"{cfg.target[0]} {'≥' if cfg.target[0].endswith('accuracy') else '≤'} {cfg.target[1]:g}" if cfg.target else "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descentlab compare: {html.escape(cfg.dataset)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
th{{background:#f3f3f3}}img{{max-width:100%}}</style></head><body>
<h1>Optimizers compared on {html.escape(cfg.dataset)} · {html.escape(cfg.model)}</h1>
<p>Each optimizer was tuned on the validation split ({html.escape(str(cfg.trials))} trials of
{html.escape(', '.join(map(str, cfg.tune)))}; {html.escape(str(cfg.budget))} each, batch
{html.escape(str(cfg.batch_size))}), then re-run at its best setting with {html.escape(str(cfg.seeds))} new seeds.
Target: {html.escape(target)}. Study storage: {html.escape(cfg.storage or 'study.db (SQLite, this folder)')}.</p>
{table}
<h2>Validation curves</h2><img alt="validation curves with seed bands" src="data:image/png;base64,{images['curves.png']}">
<h2>Performance profile</h2><img alt="performance profile" src="data:image/png;base64,{images['profile.png']}">
<p>A step is one evaluation of the loss and its gradient on a batch, except for L-BFGS, which is stepped through
<code>step(closure)</code> and evaluates them up to <code>max_eval</code> times per step on the same batch (the last
column; <code>evaluations</code> in <code>runs.csv</code>): read its steps to the target with that in mind. Muon steps the
weight matrices and AdamW the other parameters, as torch's Muon documentation advises.</p>
<p>Every trial is in <code>trials.csv</code>, every epoch of every run in <code>runs.csv</code>.</p>
</body></html>
"""
