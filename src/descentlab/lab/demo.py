"""The main job: races of the default optimizers on the ravine, the saddle and Rosenbrock (default and tuned
rates), plus a short real-data comparison on digits, all in one folder with an index page."""

from __future__ import annotations

import html
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from descentlab.outputs import write_text_atomically

DEMO_LANDSCAPES = ("ravine", "saddle", "rosenbrock")
REAL_DATA_OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam")


def real_data_comparison(epochs: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Softmax regression on digits: each optimizer at the rate its LR range test suggests, same budget."""
    from descentlab import datasets
    from descentlab.lab.lr_find import find_lr
    from descentlab.lab.train_run import Setting, train_into

    data = datasets.load("digits", seed=seed)
    rows = []
    for name in REAL_DATA_OPTIMIZERS:
        setting = Setting("digits", "logistic", name, batch_size=64, epochs=epochs, seed=seed)
        found = find_lr(setting, data=data, steps=60)
        start = time.perf_counter()
        run = train_into(None, replace(setting, lr=found.suggestion), data=data)
        rows.append({"optimizer": name, "lr (lr-find)": found.suggestion, "train_loss": run.metrics["train_loss"],
                     "val_accuracy": run.history.final["val_accuracy"], "test_accuracy": run.metrics["test_accuracy"],
                     "seconds": time.perf_counter() - start})
    return rows


def _race_one(name: str, out: str, steps: int) -> tuple[str, str, float]:
    """Race and write one landscape (runs in a worker process)."""
    import torch

    from descentlab.lab.landscapes import get_landscape
    from descentlab.lab.race import DEFAULT_OPTIMIZERS, race
    from descentlab.lab.race_outputs import format_table, write_race_outputs

    torch.set_num_threads(1)
    started = time.perf_counter()
    result = race(name, DEFAULT_OPTIMIZERS, steps=steps, tune=True)
    write_race_outputs(result, Path(out) / name, title=f"Race on the {name}")
    return f"{name}: {get_landscape(name).lesson}", format_table(result), time.perf_counter() - started


def run_demo(out: Path, *, steps: int = 500, workers: int = 2, log: Callable[[str], None] = print) -> Path:
    """Write the demo into ``out``: the lesson book first (``lessons/``), then the races and the real-data
    comparison; the landscapes run in ``workers`` processes (both cores by default)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from descentlab.lab.landscapes import get_landscape

    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_race_one, name, str(out), steps) for name in DEMO_LANDSCAPES]
        from descentlab.lab.lessons import build_book

        book = build_book(out / "lessons", "en", animate=False)
        failed = [r.lesson.id for r in book if not r.holds]
        log(f"lesson book: {len(book) - len(failed)} of {len(book)} claims hold"
            + (f"; failing: {', '.join(failed)}" if failed else "") + f" — {out / 'lessons' / 'index.html'}")
        rows = real_data_comparison()
        for future in futures:
            heading, table_text, seconds = future.result()
            log(f"\n{heading} ({seconds:.1f} s)")
            log(table_text)
    sections = [(name, get_landscape(name)) for name in DEMO_LANDSCAPES]
    log("\nreal data: softmax regression on digits, each optimizer at its lr-find rate, 8 epochs")
    log(f"{'optimizer':<10} {'lr':>9} {'train loss':>10} {'val acc':>8} {'test acc':>8}")
    for r in rows:
        log(f"{r['optimizer']:<10} {r['lr (lr-find)']:>9.3g} {r['train_loss']:>10.4f} {r['val_accuracy']:>8.3f} "
            f"{r['test_accuracy']:>8.3f}")
    cards = "".join(
        f'<div class="card"><h2><a href="{n}/report.html">{html.escape(n)}</a></h2>'
        f"<p>{html.escape(ls.formula)} — {html.escape(ls.lesson)}.</p>"
        f'<a href="{n}/report.html"><img src="{n}/race_tuned.png" alt="{html.escape(n)} race"></a></div>'
        for n, ls in sections)
    head = ["optimizer", "lr (lr-find)", "train_loss", "val_accuracy", "test_accuracy", "seconds"]
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{r[h]:.4g}</td>" if isinstance(r[h], float) else f"<td>{html.escape(str(r[h]))}</td>"
                         for h in head) + "</tr>" for r in rows) + "</table>"
    index = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descentlab demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}}
.card{{border:1px solid #ddd;padding:.5em 1em;margin:1em 0}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}th{{background:#f3f3f3}}</style>
</head><body><h1>descentlab demo</h1>
<div class="card"><h2><a href="lessons/index.html">Start here: the lesson book</a></h2>
<p>Every lesson of the lecture notes — batch / stochastic / mini-batch GD, batch size, exponentially weighted
averages, bias correction, momentum, NAG, Adagrad, Adadelta, RMSProp, Adam, learning-rate decay, saddle points,
local minima — as a claim checked on the defaults, with its pictures and numbers
({sum(r.holds for r in book)} of {len(book)} claims hold in this run).</p></div>
<p>Seven optimizers race from the same start with the same step budget, first at the registry's default rates,
then each at its best rate on a 30-point log grid (fair tuning). Open a landscape for the interactive race,
the animation and the metrics.</p>{cards}
<h2>Real data: digits</h2><p>Softmax regression, batch 64, 8 epochs; each optimizer at the rate its
learning-rate range test suggests.</p>{table}</body></html>
"""
    return write_text_atomically(out / "index.html", index)
