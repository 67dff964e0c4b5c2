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
        """The model to train on ``data``: the one named, else the task's default."""
        from descentlab import models

        return check_name("model", self.model or DEFAULT_MODEL[data.task], models.names())


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
    model, name = build_model(setting, data)
    optimizer = spec.build(model.parameters(), lr=lr, **setting.options)
    schedule = parse_schedule(setting.schedule, lr) if isinstance(setting.schedule, str) else setting.schedule
    return Built(model, name, optimizer, lr, schedule)


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
    history = fit(built.model, data.train, built.optimizer, loss=loss, epochs=setting.epochs,
                  batch_size=setting.batch_size, schedule=built.schedule, schedule_unit=setting.schedule_unit,
                  val=data.val, accuracy=classification, seed=setting.seed,
                  checkpoint_dir=folder / "checkpoints" if folder is not None else None,
                  checkpoint_every=checkpoint_every, resume=resume, progress=progress, distributed=distributed,
                  max_seconds=max_seconds)
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
    result.metrics = metrics
    if folder is not None:
        history.to_csv(folder / "history.csv")
        history.to_csv(folder / "epochs.csv", which="epochs")
        label = (f"{setting.dataset} · {built.model_name} · {setting.optimizer} (lr {built.lr:g}) · "
                 f"batch {setting.batch_size}")
        history.plot(folder / "curves.png", title=label)
        write_text_atomically(folder / "metrics.json", json.dumps(metrics, indent=1))
    return result
