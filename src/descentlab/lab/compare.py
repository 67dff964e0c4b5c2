"""Fair comparison of optimizers on real data: tune on the validation split, re-run with seeds, report.

For each optimizer an Optuna study (stored in SQLite in the output folder by default, or any Optuna storage
URL such as ``postgresql://…`` so workers on several machines share it) searches the tuned
hyperparameters (``lr`` on a log scale around the registry default, optionally ``batch_size`` and
``schedule``) for the lowest validation loss after the budget. Re-running resumes every study and only
adds the missing trials. The best setting is then re-run with ``seeds`` fresh seeds (initial weights and
data order), and the report gives the test metric mean ± std, the steps and seconds to reach the target
validation metric (AlgoPerf-style time-to-result), curves with seed bands and a performance profile.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from descentlab.extras import require

SCHEDULES = ("constant", "cosine", "exponential")
BATCH_SIZES = (16, 32, 64, 128)
TUNABLE = ("lr", "batch_size", "schedule")
DIVERGED = 1e10  # objective value of a diverged trial (Optuna storages cannot hold inf)


@dataclass
class CompareConfig:
    """Everything that defines a comparison (saved with the results)."""

    dataset: str
    model: str
    optimizers: list[str]
    out: str
    seeds: int = 3
    epochs: int = 10
    tune: tuple[str, ...] = ("lr",)
    trials: int = 10
    target: tuple[str, float] | None = None
    batch_size: int = 64
    storage: str | None = None
    workers: int = 1
    seed: int = 0
    seconds: float | None = None  # a wall-time budget per run instead of ``epochs``

    @property
    def budget(self) -> str:
        return f"{self.seconds:g} s" if self.seconds is not None else f"{self.epochs} epochs"

    def validate(self) -> None:
        from descentlab import datasets, models
        from descentlab.lab.options import check_name
        from descentlab.optim.registry import get_spec

        check_name("dataset", self.dataset, datasets.names())
        check_name("model", self.model, models.names())
        if not self.optimizers:
            raise ValueError("optimizers must name at least one registry optimizer")
        for name in self.optimizers:
            get_spec(name)
        for key in self.tune:
            check_name("tunable", key, TUNABLE)
        for key, low in (("seeds", 1), ("epochs", 1), ("trials", 0), ("workers", 1), ("batch_size", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        if self.seconds is not None:
            if not self.seconds > 0:
                raise ValueError(f"seconds must be > 0, got {self.seconds!r}")
            if "schedule" in self.tune:
                raise ValueError("tuning the schedule needs an epoch budget (a schedule runs on the epoch clock)")
        if self.target is not None:
            metric, _ = self.target
            if metric not in ("val_loss", "val_accuracy"):
                raise ValueError(f"target metric must be val_loss or val_accuracy, got {metric!r}")

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'study.db'}"


def _reached(row: dict[str, Any], target: tuple[str, float] | None) -> bool:
    if target is None or row.get(target[0]) is None:
        return False
    metric, value = target
    return row[metric] >= value if metric.endswith("accuracy") else row[metric] <= value


def train_setting(config: CompareConfig, optimizer: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one setting with one seed; return per-epoch rows, test metrics and time-to-target."""
    from descentlab import datasets, schedules
    from descentlab.lab.train_run import Setting, train_into
    from descentlab.train import TrainingDiverged

    torch.set_num_threads(1)
    data = datasets.load(config.dataset, seed=config.seed)
    lr = float(params["lr"])
    schedule = {"constant": None, "cosine": schedules.cosine(lr, config.epochs),
                "exponential": schedules.exponential(lr, 0.9)}[params.get("schedule", "constant")]
    batch = min(int(params.get("batch_size", config.batch_size)), len(data.train[0]))
    epochs = config.epochs if config.seconds is None else 1_000_000  # a time budget ends the run instead
    setting = Setting(config.dataset, config.model, optimizer, lr, batch_size=batch, epochs=epochs, schedule=schedule,
                      seed=seed)
    try:
        run = train_into(None, setting, data=data, max_seconds=config.seconds)
    except TrainingDiverged as err:
        return {"diverged": True, "error": str(err), "epochs": [], "best_val_loss": DIVERGED}
    rows = run.history.epochs
    hit = next((r for r in rows if _reached(r, config.target)), None)
    return {"diverged": False, "epochs": rows, "best_val_loss": min(r["val_loss"] for r in rows),
            "test_loss": run.metrics["test_loss"], "test_accuracy": run.metrics.get("test_accuracy"),
            "steps_to_target": hit["steps"] if hit else None, "seconds_to_target": hit["seconds"] if hit else None}


def _suggest(trial, config: CompareConfig, optimizer: str) -> dict[str, Any]:
    from descentlab.optim.registry import get_spec

    default = get_spec(optimizer).lr
    params: dict[str, Any] = {"lr": default}
    if "lr" in config.tune:
        params["lr"] = trial.suggest_float("lr", default * 1e-2, default * 1e2, log=True)
    if "batch_size" in config.tune:
        params["batch_size"] = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
    if "schedule" in config.tune:
        params["schedule"] = trial.suggest_categorical("schedule", list(SCHEDULES))
    return params


def _objective(config: CompareConfig, optimizer: str):
    def objective(trial) -> float:
        params = _suggest(trial, config, optimizer)
        result = train_setting(config, optimizer, params, seed=config.seed)
        trial.set_user_attr("diverged", result["diverged"])
        trial.set_user_attr("params", params)
        if not result["diverged"]:
            trial.set_user_attr("val_curve", [r["val_loss"] for r in result["epochs"]])
        value = result["best_val_loss"]
        return value if math.isfinite(value) else DIVERGED

    return objective


def study_name(config: CompareConfig, optimizer: str) -> str:
    tuned = "+".join(config.tune)
    budget = f"seconds={config.seconds:g}" if config.seconds is not None else f"epochs={config.epochs}"
    return f"{config.dataset}/{config.model}/{optimizer}/{budget}/tune={tuned}/seed={config.seed}"


def _load_study(config: CompareConfig, optimizer: str, worker: int = 0):
    optuna = require("optuna", "the comparison's tuning")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # each worker samples from its own seeded stream, so parallel workers do not propose the same points
    sampler = optuna.samplers.TPESampler(seed=config.seed * 1009 + worker)
    return optuna.create_study(study_name=study_name(config, optimizer), storage=config.storage_url(),
                               direction="minimize", load_if_exists=True, sampler=sampler)


def _completed(study) -> int:
    optuna = require("optuna", "the comparison's tuning")

    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def run_worker(config_dict: dict[str, Any], optimizer: str, n_trials: int, worker: int = 0) -> None:
    """One tuning worker (a process): adds ``n_trials`` trials to the shared study."""
    config = CompareConfig(**config_dict)
    study = _load_study(config, optimizer, worker)
    study.optimize(_objective(config, optimizer), n_trials=n_trials)


def tune(config: CompareConfig, optimizer: str) -> Any:
    """Bring the optimizer's study up to ``config.trials`` complete trials (resuming what is stored), split
    over ``config.workers`` processes."""
    study = _load_study(config, optimizer)
    missing = config.trials - _completed(study)
    if missing > 0:
        workers = min(config.workers, missing)
        shares = [missing // workers + (1 if w < missing % workers else 0) for w in range(workers)]
        if workers == 1:
            run_worker(asdict(config), optimizer, missing)
        else:
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=run_worker, args=(asdict(config), optimizer, n, w))
                     for w, n in enumerate(shares)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            bad = [p.exitcode for p in procs if p.exitcode != 0]
            if bad:
                raise RuntimeError(f"{len(bad)} tuning worker(s) for {optimizer} failed (exit codes {bad})")
    return _load_study(config, optimizer)


def best_params(study, config: CompareConfig, optimizer: str) -> dict[str, Any]:
    """The best complete trial's setting, or the registry defaults when nothing was tuned."""
    from descentlab.optim.registry import get_spec

    done = [t for t in study.trials if t.value is not None and t.value < DIVERGED]
    if not done:
        return {"lr": get_spec(optimizer).lr}
    return dict(min(done, key=lambda t: t.value).user_attrs["params"])


@dataclass
class CompareResult:
    config: CompareConfig
    trials: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> list[dict[str, Any]]:
        """One row per optimizer: best setting, test metric mean ± std, time-to-target."""
        rows = []
        for name, runs in self.runs.items():
            ok = [r for r in runs if not r["diverged"]]
            metric = "test_accuracy" if ok and ok[0].get("test_accuracy") is not None else "test_loss"
            values = [r[metric] for r in ok]
            steps = [r["steps_to_target"] for r in ok if r["steps_to_target"] is not None]
            secs = [r["seconds_to_target"] for r in ok if r["seconds_to_target"] is not None]
            rows.append({"optimizer": name, **{f"best_{k}": v for k, v in self.best[name].items()},
                         "metric": metric, "mean": statistics.fmean(values) if values else math.nan,
                         "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                         "seeds": len(runs), "diverged": len(runs) - len(ok),
                         "reached_target": len(steps),
                         "median_steps_to_target": statistics.median(steps) if steps else None,
                         "median_seconds_to_target": statistics.median(secs) if secs else None})
        return rows


def compare(config: CompareConfig) -> CompareResult:
    """Tune every optimizer, re-run the best setting with ``config.seeds`` seeds, write the report."""
    from descentlab.lab.compare_report import write_report

    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    result = CompareResult(config)
    for name in config.optimizers:
        study = tune(config, name)
        for t in study.trials:
            if t.value is not None:
                result.trials.append({"optimizer": name, "trial": t.number, "value": t.value,
                                      "diverged": t.user_attrs.get("diverged", False), **t.user_attrs.get("params", {})})
        result.best[name] = best_params(study, config, name)
        result.runs[name] = [train_setting(config, name, result.best[name], seed=1000 + s) for s in range(config.seeds)]
    write_report(result, out)
    return result
