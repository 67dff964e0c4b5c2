"""The race report: one self-contained HTML file (works offline, no CDN) with the pictures, an interactive
race (play / pause / scrub the step, toggle optimizers) drawn on a canvas, and the metrics table."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.lab.plots import COLOURS
from descentlab.outputs import write_text_atomically

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('race-data').textContent);
  const canvas = document.getElementById('race-canvas');
  const ctx = canvas.getContext('2d');
  const slider = document.getElementById('step');
  const label = document.getElementById('step-label');
  const play = document.getElementById('play');
  const bg = new Image();
  let timer = null;
  const [[x0, x1], [y0, y1]] = data.domain;
  const px = (x) => (x - x0) / (x1 - x0) * canvas.width;
  const py = (y) => canvas.height - (y - y0) / (y1 - y0) * canvas.height;
  function visible(i) { return document.getElementById('show-' + i).checked; }
  function draw() {
    const step = Number(slider.value);
    label.textContent = String(step);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (bg.complete && bg.naturalWidth > 0) ctx.drawImage(bg, 0, 0, canvas.width, canvas.height);
    data.racers.forEach(function (r, i) {
      if (!visible(i)) return;
      const n = Math.min(step, r.x.length - 1);
      ctx.strokeStyle = r.colour; ctx.lineWidth = 2; ctx.beginPath();
      for (let k = 0; k <= n; k++) { const X = px(r.x[k]), Y = py(r.y[k]); if (k === 0) ctx.moveTo(X, Y); else ctx.lineTo(X, Y); }
      ctx.stroke();
      ctx.fillStyle = r.colour; ctx.beginPath(); ctx.arc(px(r.x[n]), py(r.y[n]), 4, 0, 2 * Math.PI); ctx.fill();
    });
    ctx.fillStyle = '#000'; ctx.beginPath(); ctx.arc(px(data.start[0]), py(data.start[1]), 5, 0, 2 * Math.PI); ctx.fill();
    document.body.dataset.drawnStep = String(step);
  }
  function stop() { if (timer !== null) { clearInterval(timer); timer = null; } play.textContent = 'Play'; }
  play.addEventListener('click', function () {
    if (timer !== null) { stop(); return; }
    if (Number(slider.value) >= Number(slider.max)) slider.value = 0;
    play.textContent = 'Pause';
    timer = setInterval(function () {
      const next = Number(slider.value) + Math.max(1, Math.round(Number(slider.max) / 200));
      slider.value = Math.min(next, Number(slider.max)); draw();
      if (Number(slider.value) >= Number(slider.max)) stop();
    }, 30);
  });
  slider.addEventListener('input', draw);
  data.racers.forEach(function (r, i) { document.getElementById('show-' + i).addEventListener('change', draw); });
  bg.onload = draw;
  bg.src = data.background;
  draw();
  window.descentlabRace = { draw: draw, data: data };
})();
"""


def _b64(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "∞" if v == float("inf") else f"{v:.4g}"
    return str(v)


def write_race_report(result: Any, path: str | os.PathLike, *, pictures: dict[str, Path], background: Path,
                      title: str | None = None) -> Path:
    """Write the self-contained report. ``pictures`` maps captions to PNG/GIF files to embed."""
    ls = result.landscape
    racers = result.tuned or result.racers  # the interactive view shows the tuned race when there is one
    payload = {
        "domain": [list(ls.domain[0]), list(ls.domain[1])], "start": list(result.start),
        "background": _b64(background, "image/png"),
        "racers": [{"name": r.name, "lr": r.lr, "colour": COLOURS[i % len(COLOURS)],
                    "x": np.round(r.points[:, 0], 6).tolist(), "y": np.round(r.points[:, 1], 6).tolist()}
                   for i, r in enumerate(racers)],
    }
    toggles = "".join(
        f'<label style="color:{COLOURS[i % len(COLOURS)]}"><input type="checkbox" id="show-{i}" checked> '
        f'{html.escape(r.label)}</label> ' for i, r in enumerate(racers))
    from descentlab.lab.race_outputs import notes, table_rows

    headers, cells = table_rows(result)
    remarks = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in notes(result))
    minima = ", ".join(f"({x:.4g}, {y:.4g})" + ("" if ls.is_global(i) else " local")
                       for i, (x, y) in enumerate(ls.minima)) or "none (unbounded below)"
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    table = ('<table id="metrics"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
             + "</tr></thead><tbody>" + rows + "</tbody></table>")
    figures = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="{_b64(p, "image/gif" if p.suffix == ".gif" else "image/png")}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, p in pictures.items())
    data_json = json.dumps(payload).replace("</", "<\\/")  # nothing in the data can close the script element
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or 'descentlab race: ' + ls.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;color:#222;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0;font-size:14px}}td,th{{border:1px solid #ccc;padding:3px 7px}}
th{{background:#f3f3f3}}img{{max-width:100%}}#race-canvas{{border:1px solid #999}}
.controls{{margin:.5em 0}}.controls label{{margin-right:1em;white-space:nowrap}}figure{{margin:1em 0}}</style>
</head><body>
<h1>{html.escape(title or 'Race on ' + ls.name)}</h1>
<p><b>{html.escape(ls.name)}</b>: f(x, y) = {html.escape(ls.formula)} — {html.escape(ls.lesson)}.
Start ({result.start[0]:g}, {result.start[1]:g}), {result.steps} steps, tolerance |f − f*| &lt; {result.tol:g},
gradient noise σ = {result.noise:g}, seed {result.seed}. Known minima: {html.escape(minima)}; f* = {_fmt(ls.f_star)}.
No gradient clipping.</p>
<h2>Interactive race</h2>
<div class="controls"><button id="play" type="button">Play</button>
<input id="step" type="range" min="0" max="{result.steps}" value="{result.steps}" style="width:420px">
step <span id="step-label">{result.steps}</span></div>
<div class="controls">{toggles}</div>
<canvas id="race-canvas" width="600" height="480"></canvas>
<h2>Metrics</h2>
<p>Rate: <i>default</i> is the registry's rate, <i>given</i> one you set, <i>tuned</i> the best of a log grid, each
rate judged by its worst result from three starts (a rate that wins by one lucky first step from one start does
not win). <i>Reached tol</i>: the first step with |f − f*| &lt; tol; <i>settled</i>: the first step from which it stays
there; <i>escaped the saddle</i>: the first step that leaves the saddle region; <i>diverged</i>: a non-finite value or
leaving the domain by more than 10 × its size. <i>f, ∇f evaluations</i>: how often the run evaluated f and its
gradient — one per step for a gradient method, up to <code>max_eval</code> per step for L-BFGS (which races through
<code>step(closure)</code>); <i>to tol</i>: the count when it first reached the tolerance.</p>
{table}
{remarks}
<h2>Pictures</h2>
{figures}
<script type="application/json" id="race-data">{data_json}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
    return write_text_atomically(path, doc)
