"""One setting trained in several batch modes (``batch-SIZE/`` folders and the overlay picture of the notes),
in one process or data-parallel in N processes on this machine (gloo, rank 0 writing the outputs)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from descentlab.lab.train_run import OUTPUTS, Setting, TrainResult, epoch_timing, train_into
from descentlab.outputs import new_figure, prepare_run_folder, save_figure_atomically, write_text_atomically

#: The rate a comparison of batch modes with plain SGD on a classification set takes when ``--lr`` is not given:
#: the gd-modes lesson's, at which the notes' lesson shows on digits (mini-batch GD reaches a lower cost than
#: batch GD in the same epochs; at the registry's 0.01 stochastic GD wins every panel).
MODES_LR = 0.5


def modes_lr(optimizer: str, task: str, sizes: list[Any]) -> float | None:
    """The default rate of a batch-mode comparison (:data:`MODES_LR`), or ``None``: the registry's rate."""
    return MODES_LR if len(sizes) > 1 and optimizer == "sgd" and task == "classification" else None


def ours(path: Path) -> bool:
    """Whether ``path`` in a run folder is an output descentlab wrote (what ``--force`` may replace)."""
    return (path.name in OUTPUTS or path.name in ("batch_modes.png", "batch_modes.json")
            or (path.is_dir() and path.name.startswith("batch-")))


def prepare_out(out: str | Path, resume: bool, force: bool) -> bool:
    """Refuse a non-empty output folder unless ``resume`` (continue the run there) or ``force`` (replace the
    outputs of an earlier run; files descentlab did not write are left alone). Returns whether the new run must
    be staged and swapped in on success (:func:`descentlab.outputs.staged`): ``force`` over earlier outputs."""
    return prepare_run_folder(out, ours, resume=resume, force=force)


def train_modes(out: str | Path, setting: Setting, sizes: list[Any], *, data, checkpoint_every: int | None = None,
                resume: bool = False, progress: bool = False, distributed: bool = False,
                log: Callable[[str], None] | None = print) -> dict[str, TrainResult]:
    """Train ``setting`` in every batch mode of ``sizes`` into ``out`` (one run there, or ``batch-SIZE/``
    folders overlaid in ``batch_modes.png``); ``log`` the summary. With ``distributed`` this is one rank of a
    data-parallel job and only rank 0 writes and logs."""
    out = Path(out)
    started = time.perf_counter()
    results = {str(s): train_into(out if len(sizes) == 1 else out / f"batch-{s}", replace(setting, batch_size=s),
                                  data=data, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                                  distributed=distributed)
               for s in sizes}
    if not all(r.metrics for r in results.values()):  # a rank that does not write
        return results
    if len(sizes) > 1:
        model_name = next(iter(results.values())).model_name
        lr = next(iter(results.values())).lr
        numbers = overlay_figure(results, out / "batch_modes.png",
                                 f"{setting.dataset} · {model_name} · {setting.optimizer} (lr {lr:g})")
        write_text_atomically(out / "batch_modes.json", json.dumps({"lr": lr, "modes": numbers}, indent=1))
    if log is not None:
        for r in results.values():
            if "batch_size_rule" in r.metrics:
                log(f"batch size: auto → {r.metrics['batch_size_rule']}")
        log(summary_text(data.summary(), {k: r.metrics for k, r in results.items()}, out,
                         time.perf_counter() - started))
    return results


def _rank_main(rank: int, world_size: int, out: str, setting: Setting, sizes: list[Any], data,
               checkpoint_every: int | None, resume: bool, progress: bool) -> None:
    """One rank of a data-parallel job (runs in a spawned process inside the gloo process group)."""
    train_modes(out, setting, sizes, data=data, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                distributed=True)


def train_in_processes(out: str | Path, setting: Setting, sizes: list[Any], *, data, nproc: int,
                       timeout: float | None = None, checkpoint_every: int | None = None, resume: bool = False,
                       progress: bool = False, on_start: Callable[[list[int]], None] | None = None) -> None:
    """:func:`train_modes` data-parallel in ``nproc`` processes; a rank that dies, raises or waits more than
    ``timeout`` seconds for the others stops them all and raises :class:`descentlab.distributed.RankFailure`."""
    from descentlab.distributed import DEFAULT_TIMEOUT, run_ranks

    run_ranks(_rank_main, nproc, str(out), setting, sizes, data, checkpoint_every, resume, progress,
              timeout=timeout if timeout is not None else DEFAULT_TIMEOUT, on_start=on_start)


def resume_hint(out: Path, resumed: bool, nproc: int) -> str:
    """Where the newest complete checkpoints are and the command that continues from them."""
    from descentlab.train import list_checkpoints

    folders = [out / "checkpoints"] + sorted(out.glob("batch-*/checkpoints"))
    newest = [str(found[-1]) for found in (list_checkpoints(f) for f in folders) if found]
    again = "again" if resumed else "with --resume added"
    if not newest:
        return f"No checkpoint was written yet; to start over, run the same command {again} (--nproc {nproc})."
    return (f"Checkpoints are written atomically, so the newest one is complete: {', '.join(newest)}. "
            f"To continue from it, run the same command {again} (--nproc {nproc}).")


def modes_numbers(results: dict[str, TrainResult]) -> dict[str, dict[str, Any]]:
    """The numbers behind the picture: each mode's training cost per epoch and its epoch time, measured fairly
    (:func:`descentlab.lab.train_run.epoch_timing`: median after the warm-up epoch, min–max spread)."""
    return {size: {"cost_per_epoch": [float(r["train_loss"]) for r in result.history.epochs],
                   **epoch_timing(result.history.epochs)} for size, result in results.items()}


def overlay_figure(results: dict[str, TrainResult], path: Path, title: str) -> dict[str, dict[str, Any]]:
    """The notes' picture: per-epoch training cost of each batch mode, against epochs and against wall time
    (epoch k at k × the median epoch time, warm-up excluded, the bars spanning k × the fastest … slowest), and
    the epoch times with their spread. Returns the numbers drawn (:func:`modes_numbers`)."""
    numbers = modes_numbers(results)
    fig = new_figure(figsize=(15, 4))
    by_epoch, by_time, bars = fig.subplots(1, 3)
    for size, result in results.items():
        costs, timing = numbers[size]["cost_per_epoch"], numbers[size]
        label = {"full": "batch GD (full)", "1": "stochastic GD (1)"}.get(size, f"mini-batch GD ({size})")
        ks = list(range(1, len(costs) + 1))
        line, = by_epoch.plot(ks, costs, marker="o", ms=3, label=label)
        if timing.get("epochs_timed"):
            med, low, high = (timing[k] for k in ("epoch_seconds_median", "epoch_seconds_min", "epoch_seconds_max"))
            by_time.errorbar([k * med for k in ks], costs, xerr=[[k * (med - low) for k in ks],
                                                                 [k * (high - med) for k in ks]],
                             marker="o", ms=3, capsize=2, color=line.get_color(), label=label)
            bars.bar(label.split(" (")[0] + f"\n({size})", med * 1000, yerr=[[(med - low) * 1000], [(high - med) * 1000]],
                     capsize=4, color=line.get_color())
    timed = [n.get("epochs_timed", 0) for n in numbers.values()]
    warm = all(n.get("warmup_excluded") for n in numbers.values())
    note = f"median of {min(timed)} epochs after the first" if warm else "one epoch, warm-up included"
    for ax, xlabel, titled in ((by_epoch, "epoch", "cost per epoch"),
                               (by_time, "wall time (s): epochs × median epoch time", "cost against wall time")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training cost")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(titled, fontsize=9)
    bars.set_ylabel("ms per epoch (bars: fastest … slowest)")
    bars.set_title(f"time per epoch ({note})", fontsize=9)
    bars.tick_params(axis="x", labelsize=7)
    bars.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    save_figure_atomically(fig, path)
    return numbers


def summary_text(dataset: str, metrics: dict[str, dict[str, Any]], out: Path, seconds: float) -> str:
    """The table ``descentlab train`` prints: one row per batch mode."""
    lines = [dataset, f"{'batch':>6} {'epochs':>6} {'steps':>7} {'train_loss':>11} {'val_loss':>10} {'test_loss':>10} "
                      f"{'test_acc':>8} {'time':>7} {'ms/epoch [min–max]':>22}"]
    for size, m in metrics.items():
        acc = f"{m['test_accuracy']:.3f}" if "test_accuracy" in m else "-"
        per_epoch = (f"{m['epoch_seconds_median'] * 1000:.3g} [{m['epoch_seconds_min'] * 1000:.3g}–"
                     f"{m['epoch_seconds_max'] * 1000:.3g}]" if "epoch_seconds_median" in m else "-")
        lines.append(f"{size:>6} {m['epochs']:>6} {m['steps']:>7} {m['train_loss']:>11.5g} {m['val_loss']:>10.5g} "
                     f"{m['test_loss']:>10.5g} {acc:>8} {m['seconds']:>6.1f}s {per_epoch:>22}")
    if any(m.get("warmup_excluded") for m in metrics.values()):
        lines.append("ms/epoch: the median of the epochs after the first (its warm-up excluded), the steps alone")
    lines.append(f"wrote {out} in {seconds:.1f} s")
    return "\n".join(lines)
