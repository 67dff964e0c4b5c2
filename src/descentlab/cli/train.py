"""``descentlab train DATASET --model M --optimizer O … --out DIR``: batch, stochastic or mini-batch
gradient descent on a real dataset, with history, curves, metrics and exact resume; ``--nproc N`` trains
data-parallel in N processes on this machine (gloo), rank 0 writing the outputs."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_MODEL = {"regression": "linear", "classification": "logistic", "quadratic": "quadratic"}
OUTPUTS = ("history.csv", "epochs.csv", "curves.png", "metrics.json", "checkpoints")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model on a dataset with one optimizer")
    p.add_argument("dataset", help="dataset name (see `descentlab datasets`)")
    p.add_argument("--model", help="linear | logistic | mlp | cnn1d | quadratic (default: by task)")
    p.add_argument("--optimizer", default="sgd", help="registry name (see `descentlab optimizers`)")
    p.add_argument("--lr", type=float, help="learning rate (default: the registry's)")
    p.add_argument("--opt", help="optimizer options, e.g. momentum=0.9,nesterov=true (tuples as 0.9/0.999)")
    p.add_argument("--batch-size", default="full",
                   help="full | 1 | N | auto, or a comma list (full,1,64) to train and overlay the modes")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--schedule", help="NAME:ARG=VAL,… e.g. exponential:gamma=0.9 (lr0 defaults to --lr)")
    p.add_argument("--schedule-unit", choices=("epoch", "step"), default="epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: epoch ends)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--force", action="store_true", help="replace the outputs of an earlier run in --out")
    p.add_argument("--nproc", default="1",
                   help="data-parallel processes on this machine (gloo; each takes its share of every batch; "
                        "default 1)")
    p.add_argument("--timeout", type=float,
                   help="with --nproc > 1: seconds a rank waits for the others before the job stops (default 300)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def _parse_batch_sizes(text: str) -> list[Any]:
    from descentlab.data import check_batch_size

    sizes = []
    for part in text.split(","):
        part = part.strip()
        sizes.append(check_batch_size(part if part in ("full", "auto") else _as_int(part)))
    return sizes


def _as_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--batch-size: expected full, auto or a positive integer, got {text!r}") from None


def _ours(path: Path) -> bool:
    return path.name in OUTPUTS or path.name == "batch_modes.png" or (path.is_dir() and path.name.startswith("batch-"))


def prepare_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse a non-empty output folder unless --resume (continue the run there) or --force (replace the
    outputs of an earlier run; files descentlab did not write are left alone)."""
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    if existing and not (resume or force):
        raise FileExistsError(f"{out} is not empty ({', '.join(existing[:5])}); pass --resume to continue the run "
                              "there or --force to replace it")
    if force and not resume:
        for target in [out / name for name in existing if _ours(out / name)]:
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _build(args: argparse.Namespace, data, model_name: str):
    """The run's model, optimizer, learning rate and schedule (bad --opt / --schedule raise ValueError here)."""
    from descentlab import models
    from descentlab.cli.options import parse_pairs, parse_schedule
    from descentlab.optim.registry import get_spec

    spec = get_spec(args.optimizer)
    options = parse_pairs(args.opt, "--opt")
    lr = args.lr if args.lr is not None else spec.lr
    extra = {"hessian": data.info["hessian"]} if model_name == "quadratic" else {}
    model = models.build(model_name, data.n_features, data.n_outputs, seed=args.seed, **extra)
    optimizer = spec.build(model.parameters(), lr=lr, **options)
    return model, optimizer, lr, parse_schedule(args.schedule, lr)


def train_one(args: argparse.Namespace, data, model_name: str, batch_size: Any, out: Path,
              distributed: bool = False) -> dict[str, Any]:
    """Train one run into ``out``; return its flat metrics. With ``distributed`` this is one rank of a
    data-parallel run and only rank 0 writes."""
    import torch.distributed as dist

    from descentlab.train import TASK_LOSS, evaluate, fit, get_loss

    writer = not distributed or dist.get_rank() == 0
    if writer:
        out.mkdir(parents=True, exist_ok=True)
    model, optimizer, lr, schedule = _build(args, data, model_name)
    classification = data.task == "classification"
    loss = TASK_LOSS[data.task]
    history = fit(model, data.train, optimizer, loss=loss, epochs=args.epochs, batch_size=batch_size,
                  schedule=schedule, schedule_unit=args.schedule_unit, val=data.val,
                  accuracy=classification, seed=args.seed, checkpoint_dir=out / "checkpoints",
                  checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.quiet,
                  distributed=distributed)
    if not writer:
        return {}
    history.to_csv(out / "history.csv")
    history.to_csv(out / "epochs.csv", which="epochs")
    label = f"{args.dataset} · {model_name} · {args.optimizer} (lr {lr:g}) · batch {batch_size}"
    history.plot(out / "curves.png", title=label)
    final = history.final
    test = evaluate(model, data.test, get_loss(loss), classification)
    metrics = {"train_loss": final["train_loss"], "val_loss": final.get("val_loss"), "test_loss": test["loss"]}
    if classification:
        metrics["test_accuracy"] = test["accuracy"]
    metrics.update({"epochs": final["epoch"] + 1, "steps": final["steps"], "seconds": final["seconds"],
                    "batch_size": str(batch_size), "optimizer": args.optimizer, "lr": lr, "model": model_name,
                    "dataset": args.dataset})
    from descentlab.train.history import write_text_atomically

    write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=1))
    return {"metrics": metrics, "history": history}


def _check_nproc(text: Any) -> int:
    try:
        nproc = int(text)
    except (TypeError, ValueError):
        nproc = 0
    if nproc < 1:
        raise ValueError(f"--nproc must be an integer >= 1 (1: one process; N: N data-parallel processes on this "
                         f"machine), got {text!r}")
    return nproc


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets, models
    from descentlab.cli.options import check_name
    from descentlab.optim.registry import get_spec

    check_name("dataset", args.dataset, datasets.names())
    get_spec(args.optimizer)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.lr is not None and not args.lr >= 0:
        raise ValueError(f"--lr must be >= 0, got {args.lr}")
    args.nproc = _check_nproc(args.nproc)
    if args.timeout is not None:
        from descentlab.distributed import check_timeout

        check_timeout(args.timeout, "--timeout")
    sizes = _parse_batch_sizes(args.batch_size)
    data = datasets.load(args.dataset, seed=args.seed)
    model_name = check_name("model", args.model or DEFAULT_MODEL[data.task], models.names())
    for size in sizes:
        if isinstance(size, int) and size > len(data.train[0]):
            raise ValueError(f"--batch-size {size} is larger than the training set ({len(data.train[0])} samples)")
        if isinstance(size, int) and size < args.nproc:
            raise ValueError(f"--batch-size {size} is smaller than --nproc {args.nproc}: every process needs a "
                             f"share of each batch; use --batch-size >= {args.nproc} or --nproc <= {size}")
    if args.nproc > 1:
        _build(args, data, model_name)  # bad --opt / --schedule stop here, not in N processes
    out = Path(args.out)
    prepare_out(out, args.resume, args.force)
    if args.nproc > 1:
        return _train_in_processes(args, data, model_name, sizes, out)
    train_all(args, data, model_name, sizes, out)
    return 0


def train_all(args: argparse.Namespace, data, model_name: str, sizes: list[Any], out: Path,
              distributed: bool = False) -> None:
    """Train every batch mode into ``out`` (one run, or ``batch-SIZE/`` folders overlaid); print the summary.
    With ``distributed`` this is one rank of a data-parallel job and only rank 0 writes and prints."""
    started = time.perf_counter()
    if len(sizes) == 1:
        result = train_one(args, data, model_name, sizes[0], out, distributed)
        if result:
            _print_summary(data.summary(), {str(sizes[0]): result["metrics"]}, out, time.perf_counter() - started)
        return
    results = {str(s): train_one(args, data, model_name, s, out / f"batch-{s}", distributed) for s in sizes}
    if all(results.values()):
        _overlay(results, out / "batch_modes.png", f"{args.dataset} · {model_name} · {args.optimizer}")
        _print_summary(data.summary(), {k: v["metrics"] for k, v in results.items()}, out,
                       time.perf_counter() - started)


def _rank_main(rank: int, world_size: int, args: argparse.Namespace, data, model_name: str, sizes: list[Any],
               out: str) -> None:
    """One rank of ``--nproc N`` (runs in a spawned process inside the gloo process group)."""
    train_all(args, data, model_name, sizes, Path(out), distributed=True)


def _train_in_processes(args: argparse.Namespace, data, model_name: str, sizes: list[Any], out: Path) -> int:
    """Run ``--nproc`` ranks; if one dies or fails, stop them all and say how to resume (exit code 1)."""
    from descentlab.distributed import DEFAULT_TIMEOUT, RankFailure, run_ranks

    def started(pids: list[int]) -> None:
        ranks = ", ".join(f"rank {r} pid {pid}" for r, pid in enumerate(pids))
        print(f"training on {len(pids)} processes (gloo): {ranks}", flush=True)

    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    try:
        run_ranks(_rank_main, args.nproc, args, data, model_name, sizes, str(out), timeout=timeout, on_start=started)
    except RankFailure as err:
        print(f"descentlab train: error: {err}.", file=sys.stderr)
        if "timed out" in str(err).lower():
            print(f"A process waited more than --timeout {timeout:g} s for the others: one hung or was too slow "
                  "(raise --timeout if it was only slow).", file=sys.stderr)
        if err.died or "timed out" in str(err).lower():
            print(_resume_hint(out, args), file=sys.stderr)
        return 1
    return 0


def _resume_hint(out: Path, args: argparse.Namespace) -> str:
    """Where the newest complete checkpoints are and the command that continues from them."""
    from descentlab.train import list_checkpoints

    folders = [out / "checkpoints"] + sorted(out.glob("batch-*/checkpoints"))
    newest = [str(found[-1]) for found in (list_checkpoints(f) for f in folders) if found]
    again = "again" if args.resume else "with --resume added"
    if not newest:
        return f"No checkpoint was written yet; to start over, run the same command {again} (--nproc {args.nproc})."
    return (f"Checkpoints are written atomically, so the newest one is complete: {', '.join(newest)}. "
            f"To continue from it, run the same command {again} (--nproc {args.nproc}).")


def _overlay(results: dict[str, Any], path: Path, title: str) -> None:
    """The notes' picture: per-epoch training cost of each batch mode, against epochs and wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from descentlab.pictures import save_figure_atomically

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for size, result in results.items():
        rows = result["history"].epochs
        label = {"full": "batch GD (full)", "1": "stochastic GD (1)"}.get(size, f"mini-batch GD ({size})")
        by_epoch.plot([r["epoch"] + 1 for r in rows], [r["train_loss"] for r in rows], marker="o", ms=3, label=label)
        by_time.plot([r["seconds"] for r in rows], [r["train_loss"] for r in rows], marker="o", ms=3, label=label)
    for ax, xlabel in ((by_epoch, "epoch"), (by_time, "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training cost")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    try:
        save_figure_atomically(fig, path)
    finally:
        plt.close(fig)


def _print_summary(dataset: str, metrics: dict[str, dict[str, Any]], out: Path, seconds: float) -> None:
    print(dataset)
    header = f"{'batch':>6} {'epochs':>6} {'steps':>7} {'train_loss':>11} {'val_loss':>10} {'test_loss':>10} {'test_acc':>8} {'time':>7}"
    print(header)
    for size, m in metrics.items():
        acc = f"{m['test_accuracy']:.3f}" if "test_accuracy" in m else "-"
        print(f"{size:>6} {m['epochs']:>6} {m['steps']:>7} {m['train_loss']:>11.5g} {m['val_loss']:>10.5g} "
              f"{m['test_loss']:>10.5g} {acc:>8} {m['seconds']:>6.1f}s")
    print(f"wrote {out} in {seconds:.1f} s")
