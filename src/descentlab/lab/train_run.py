"""Train one setting — a dataset, a model, an optimizer with its rate, options and schedule, a batch mode,
epochs and a seed — optionally into a folder (history.csv, epochs.csv, curves.png, metrics.json and
checkpoints). ``descentlab train`` and ``lr-find``, the comparisons and the demo all train through here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from descentlab.lab.options import check_name, parse_schedule
from descentlab.outputs import write_text_atomically

DEFAULT_MODEL = {"regression": "linear", "classification": "logistic", "quadratic": "quadratic"}
OUTPUTS = ("history.csv", "epochs.csv", "curves.png", "metrics.json", "checkpoints")


@dataclass
class Setting:
    """One training setting. ``model=None``: the task's default (:data:`DEFAULT_MODEL`); ``lr=None``: the
    registry's rate; ``schedule``: ``"NAME:k=v,…"`` (``lr0`` defaults to the run's rate) or a callable
    ``t -> lr``; ``seed`` draws the initial weights and the data order (and splits the data when loaded here)."""

    dataset: str
    model: str | None = None
    optimizer: str = "sgd"
    lr: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | str = "full"
    epochs: int = 20
    schedule: str | Callable[[int], float] | None = None
    schedule_unit: str = "epoch"
    seed: int = 0

    def load(self):
        """The setting's dataset (an unknown name raises ``ValueError`` with the nearest valid one)."""
        from descentlab import datasets

        return datasets.load(check_name("dataset", self.dataset, datasets.names()), seed=self.seed)

    def model_name(self, data) -> str:
        """The model to train on ``data``: the one named, else the task's default (a quadratic model needs a
        quadratic dataset, whose Hessian it takes)."""
        from descentlab import models

        name = check_name("model", self.model or DEFAULT_MODEL[data.task], models.names())
        if name == "quadratic" and "hessian" not in data.info:
            others = [m for m in models.names() if m != "quadratic"]
            raise ValueError(f"--model quadratic needs a quadratic dataset (one with a Hessian); {self.dataset} is a "
                             f"{data.task} dataset: use one of {', '.join(others)}")
        return name


#: What training a model here offers a registry row beyond the ordinary contract (registry.REQUIREMENTS):
#: ``step(closure)`` (train.closure) and matrices (train.partitioned: the 2-D weights to the row, the rest to
#: AdamW). Dense gradients only, so a row that takes sparse gradients only (sparseadam) does not train here.
TRAIN_OFFERS: tuple[str, ...] = ("closure", "matrices")


def check_trainable(name: str, what: str = "--optimizer") -> None:
    """Refuse a registry row whose contract training a model here cannot meet, with the registry's reason."""
    from descentlab.optim.registry import get_spec

    unmet = get_spec(name).unmet(TRAIN_OFFERS)
    if unmet is not None:
        raise ValueError(f"{what}: {name} cannot train the models here (their gradients are dense): {unmet}")


def check_optimizer(name: str, options: dict[str, Any], lr: float | None = None, what: str = "--opt") -> None:
    """Refuse options that ``name`` does not take, or would ignore (``lr``, which has its own flag), and values
    its constructor refuses — with one line naming the option and the valid ones."""
    import inspect

    from descentlab.optim.registry import get_spec

    spec = get_spec(name)
    if "lr" in options:
        raise ValueError(f"{what}: lr is not an option here (it would be ignored); give the rate with --lr")
    valid = [p for p in inspect.signature(spec.cls.__init__).parameters if p not in ("self", "params", "lr")]
    for key in options:
        if key not in valid:
            raise ValueError(f"{what}: {name} has no option {key!r}; its options are {', '.join(valid)}")
    probe = [torch.zeros((1, 1) if "matrices" in spec.requires else (1,), requires_grad=True)]
    try:
        spec.build(probe, **({"lr": lr} if lr is not None else {}), **options)
    except TypeError as err:
        raise ValueError(f"{what}: {err}") from None


@dataclass
class Built:
    """What a setting builds: the model (its initial weights from the seed), optimizer, rate and schedule."""

    model: torch.nn.Module
    model_name: str
    optimizer: torch.optim.Optimizer
    lr: float
    schedule: Callable[[int], float] | None


def build_model(setting: Setting, data) -> tuple[torch.nn.Module, str]:
    """The setting's model for ``data`` and its name (a quadratic model gets the dataset's Hessian)."""
    from descentlab import models

    name = setting.model_name(data)
    extra = {"hessian": data.info["hessian"]} if name == "quadratic" else {}
    return models.build(name, data.n_features, data.n_outputs, seed=setting.seed, **extra), name


def build(setting: Setting, data) -> Built:
    """Model, optimizer, rate and schedule of ``setting`` (bad options or schedules raise ``ValueError`` here)."""
    from descentlab.optim.registry import get_spec

    spec = get_spec(setting.optimizer)
    lr = setting.lr if setting.lr is not None else spec.lr
    check_trainable(setting.optimizer)
    check_optimizer(setting.optimizer, setting.options, lr)
    model, name = build_model(setting, data)
    if "matrices" in spec.requires:  # Muon: the weight matrices; AdamW the biases (torch's Muon docs)
        from descentlab.train.partitioned import split_matrices

        optimizer = split_matrices(setting.optimizer, model, lr, setting.options)
    else:
        optimizer = spec.build(model.parameters(), lr=lr, **setting.options)
    schedule = parse_schedule(setting.schedule, lr) if isinstance(setting.schedule, str) else setting.schedule
    return Built(model, name, optimizer, lr, schedule)


#: The run configuration stored in every checkpoint, and the option that sets each entry.
RESUME_FLAGS = {"dataset": "DATASET", "model": "--model", "optimizer": "--optimizer", "options": "--opt",
                "lr": "--lr", "schedule": "--schedule", "schedule_unit": "--schedule-unit",
                "batch_size": "--batch-size", "seed": "--seed", "n_train": "the training split"}


def run_config(setting: Setting, data) -> dict[str, Any]:
    """What defines a run (a resume must match it): dataset, model, optimizer with its rate and every option,
    schedule, batch mode, seed and the training split's size."""
    from descentlab.optim.registry import get_spec

    schedule = setting.schedule
    if schedule is not None and not isinstance(schedule, str):
        schedule = f"callable {getattr(schedule, '__qualname__', type(schedule).__name__)}"
    lr = setting.lr if setting.lr is not None else get_spec(setting.optimizer).lr
    return {"dataset": setting.dataset, "model": setting.model_name(data), "optimizer": setting.optimizer,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(setting.options.items())},
            "lr": float(lr), "schedule": schedule, "schedule_unit": setting.schedule_unit,
            "batch_size": str(setting.batch_size), "seed": setting.seed, "n_train": len(data.train[0])}


def _shown(key: str, value: Any) -> str:
    if key == "options":
        return ",".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()) or \
            "(none)"
    return "(none)" if value is None else str(value)


def check_resume(folder: str | Path, setting: Setting, data) -> None:
    """Before anything is written: refuse to resume the run in ``folder`` with another setting (one line
    naming the option and both values), or from a folder whose checkpoints do not load."""
    from descentlab.train import load_latest_checkpoint

    ck = load_latest_checkpoint(Path(folder) / "checkpoints")
    if ck is None:
        return
    saved, current = ck.get("run"), run_config(setting, data)
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: checkpoint {ck['path']} holds no run configuration; it cannot be resumed")
    for key in RESUME_FLAGS:
        if saved.get(key) != current[key]:
            flag = RESUME_FLAGS[key]
            raise ValueError(f"--resume: {flag} differs from the run in {folder}: it was {_shown(key, saved.get(key))}"
                             f", this command gives {_shown(key, current[key])}; resume with the same {flag}, or "
                             "start a new run (--force or another --out)")


def auto_batch_text(choice: dict[str, Any]) -> str:
    """What ``--batch-size auto`` chose and the notes' rule behind it, in a few words."""
    from descentlab.data.batch_size import SMALL_DATASET

    n = choice["n_samples"]
    if choice["batch_size"] == "full":
        return f"full batch ({n} samples ≤ {SMALL_DATASET}: the notes' rule for small sets)"
    return (f"{choice['batch_size']} ({n} samples > {SMALL_DATASET}: the notes' rule takes a power of two, "
            "64–512 typically; this one is the smallest within 10 % of the best measured throughput)")


def epoch_timing(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """The wall time of an epoch's steps, measured fairly: the median over the epochs after the first (the first
    pays the warm-up), with the fastest and slowest of them as the spread; with one epoch, that one."""
    import statistics

    times = [float(r["epoch_seconds"]) if "epoch_seconds" in r else float(r["seconds"]) - before
             for r, before in zip(epochs, [0.0] + [float(r["seconds"]) for r in epochs[:-1]])]
    timed = times[1:] if len(times) > 1 else times
    if not timed:
        return {}
    return {"epoch_seconds_median": statistics.median(timed), "epoch_seconds_min": min(timed),
            "epoch_seconds_max": max(timed), "epochs_timed": len(timed), "warmup_excluded": len(times) > 1}


@dataclass
class TrainResult:
    """A trained setting: its history, the flat metrics (``metrics.json``), the trained model and its rate.
    ``metrics`` is empty on the ranks of a data-parallel run that do not write."""

    history: Any
    metrics: dict[str, Any]
    model: torch.nn.Module
    model_name: str
    lr: float


def train_into(folder: str | Path | None, setting: Setting, *, data=None, checkpoint_every: int | None = None,
               resume: bool = False, progress: bool = False, distributed: bool = False,
               max_seconds: float | None = None) -> TrainResult:
    """Train ``setting`` (on ``data``, loaded from the setting when not given) and evaluate on the test split.

    With a ``folder``, the run checkpoints into ``folder/checkpoints`` (``resume`` continues from them) and
    writes history.csv (per step), epochs.csv, curves.png and metrics.json there, every file atomically. With
    ``distributed`` this is one rank of a data-parallel run (inside a process group) and only rank 0 writes.
    A diverging run raises :class:`descentlab.train.TrainingDiverged`.
    """
    import torch.distributed as dist

    from descentlab.train import TASK_LOSS, evaluate, fit, get_loss

    data = data if data is not None else setting.load()
    writer = not distributed or dist.get_rank() == 0
    folder = Path(folder) if folder is not None else None
    if folder is not None and writer:
        folder.mkdir(parents=True, exist_ok=True)
    built = build(setting, data)
    classification = data.task == "classification"
    loss = TASK_LOSS[data.task]
    from descentlab.train import TrainingDiverged

    try:
        history = fit(built.model, data.train, built.optimizer, loss=loss, epochs=setting.epochs,
                      batch_size=setting.batch_size, schedule=built.schedule, schedule_unit=setting.schedule_unit,
                      val=data.val, accuracy=classification, seed=setting.seed,
                      checkpoint_dir=folder / "checkpoints" if folder is not None else None,
                      checkpoint_every=checkpoint_every, resume=resume, progress=progress, distributed=distributed,
                      max_seconds=max_seconds, run_config=run_config(setting, data) if folder is not None else None)
    except TrainingDiverged as err:
        if folder is None or not writer or err.history is None:
            raise
        err.history.to_csv(folder / "history.csv")
        err.history.to_csv(folder / "epochs.csv", which="epochs")
        raise TrainingDiverged(f"{err}; history.csv holds the {len(err.history.steps)} steps before it",
                               history=err.history, step=err.step, value=err.value,
                               checkpoint=err.checkpoint) from None
    result = TrainResult(history, {}, built.model, built.model_name, built.lr)
    if not writer:
        return result
    final = history.final
    test = evaluate(built.model, data.test, get_loss(loss), classification)
    metrics = {"train_loss": final["train_loss"], "val_loss": final.get("val_loss"), "test_loss": test["loss"]}
    if classification:
        metrics["test_accuracy"] = test["accuracy"]
    metrics.update({"epochs": final["epoch"] + 1, "steps": final["steps"], "seconds": final["seconds"],
                    "batch_size": str(setting.batch_size), "optimizer": setting.optimizer, "lr": built.lr,
                    "model": built.model_name, "dataset": setting.dataset})
    metrics.update(epoch_timing(history.epochs))
    choice = getattr(history, "batch_size_choice", None)
    if choice is not None:
        metrics.update({"batch_size_chosen": choice["batch_size"], "batch_size_rule": auto_batch_text(choice),
                        "batch_size_reason": choice["reason"]})
    result.metrics = metrics
    if folder is not None:
        history.to_csv(folder / "history.csv")
        history.to_csv(folder / "epochs.csv", which="epochs")
        label = (f"{setting.dataset} · {built.model_name} · {setting.optimizer} (lr {built.lr:g}) · "
                 f"batch {setting.batch_size}")
        history.plot(folder / "curves.png", title=label)
        write_text_atomically(folder / "metrics.json", json.dumps(metrics, indent=1))
    return result
