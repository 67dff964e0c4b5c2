"""Fair comparison of optimizers on real data: tune on the validation split, re-run with seeds, report.

For each optimizer an Optuna study (stored in SQLite in the output folder by default, or any Optuna storage
URL such as ``postgresql://…`` so workers on several machines share it) searches the tuned
hyperparameters (``lr`` on a log scale around the registry default, optionally ``batch_size`` and
``schedule``) for the lowest validation loss after the budget. Re-running resumes every study and only
adds the missing trials. The best setting is then re-run with ``seeds`` fresh seeds (initial weights and
data order), and the report gives the test metric mean ± std, the steps and seconds to reach the target
validation metric (AlgoPerf-style time-to-result), curves with seed bands and a performance profile.

Every registry row that trains a model takes part (:data:`descentlab.lab.train_run.TRAIN_OFFERS`): L-BFGS is
stepped through ``step(closure)`` on each mini-batch, and the summary's ``evaluations_per_step`` says how many
evaluations of the loss and its gradient one of its steps made (1 for a gradient method), so that its steps to the
target are read fairly; Muon steps the 2-D weights and AdamW the rest (``descentlab.train.partitioned``); a row that
takes sparse gradients only (sparseadam) is refused with the reason.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import signal
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from descentlab.extras import require

SCHEDULES = ("constant", "cosine", "exponential")
BATCH_SIZES = (16, 32, 64, 128)
TUNABLE = ("lr", "batch_size", "schedule")
DIVERGED = 1e10  # objective value of a diverged trial (Optuna storages cannot hold inf)
HEARTBEAT, GRACE = 10, 60  # seconds: a trial whose process stopped beating for GRACE s is marked failed
#: The fields that make two comparisons the same one (a re-run may add optimizers, trials and seeds).
IDENTITY = ("dataset", "model", "epochs", "seconds", "tune", "batch_size", "seed")
IDENTITY_FILE = "comparison.json"
OUTPUTS = ("trials.csv", "runs.csv", "summary.json", "curves.png", "profile.png", "report.html", "study.db",
           IDENTITY_FILE)


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
        from descentlab.lab.train_run import check_trainable

        for name in self.optimizers:
            get_spec(name)
            check_trainable(name, "optimizers")
        for key in self.tune:
            check_name("tunable", key, TUNABLE)
        for key, low in (("seeds", 1), ("epochs", 1), ("trials", 0), ("workers", 1), ("batch_size", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        if self.seconds is not None:
            if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
                raise ValueError(f"seconds must be a finite number > 0, got {self.seconds!r}")
            if "schedule" in self.tune:
                raise ValueError("tuning the schedule needs an epoch budget (a schedule runs on the epoch clock)")
        if self.target is not None:
            metric, _ = self.target
            if metric not in ("val_loss", "val_accuracy"):
                raise ValueError(f"target metric must be val_loss or val_accuracy, got {metric!r}")
            if not math.isfinite(self.target[1]):
                raise ValueError(f"target value must be a finite number, got {self.target[1]!r}")
        if self.storage is not None:
            check_storage(self.storage)

    def storage_url(self, folder: str | os.PathLike | None = None) -> str:
        """``storage``, else a SQLite study.db in ``folder`` (default ``out``): the URL is built with
        ``sqlalchemy.engine.URL.create``, so any character in the path (``?``, ``%``, ``#``) stays in the path."""
        if self.storage:
            return self.storage
        from sqlalchemy.engine import URL

        path = Path(folder if folder is not None else self.out).resolve() / "study.db"
        return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)

    def identity(self) -> dict[str, Any]:
        """What makes a comparison this one (``IDENTITY``), as plain JSON values."""
        return json.loads(json.dumps({k: getattr(self, k) for k in IDENTITY}))


def check_storage(url: str) -> None:
    """Refuse a storage URL SQLAlchemy cannot parse, or one for an unknown database, naming ``--storage``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise ValueError(f"--storage must be an Optuna storage URL such as sqlite:///path/study.db or "
                         f"postgresql://user@host/db, got {url!r} ({str(err).splitlines()[0]})") from None


def check_folder(out: str | os.PathLike, config: CompareConfig, force: bool) -> bool:
    """Refuse an ``out`` that holds another comparison (or anything else) unless ``force``. Returns whether
    the new comparison must be written beside the old outputs and swapped in on success."""
    from descentlab.outputs import check_empty, outputs_in

    out = Path(out)
    saved: dict[str, Any] | None = None
    for name, read in ((IDENTITY_FILE, lambda d: d), ("summary.json", lambda d: d.get("config", {}))):
        if (out / name).is_file():
            try:
                data = read(json.loads((out / name).read_text(encoding="utf-8")))
                saved = {k: data.get(k) for k in IDENTITY}
                saved["tune"] = list(saved["tune"] or [])
            except (ValueError, AttributeError, TypeError):
                saved = {"unreadable": name}
            break
    ours = outputs_in(out, lambda p: p.name in OUTPUTS)
    if saved is None and (out / "study.db").exists():
        saved = {"unknown": "a study.db without comparison.json"}
    if saved is not None and saved != config.identity():
        if force:
            return True
        current = config.identity()
        diff = [f"{k} {saved.get(k)!r} (this one: {current[k]!r})" for k in IDENTITY if saved.get(k) != current[k]]
        raise FileExistsError(f"{out} holds another comparison ({'; '.join(diff) or saved}); pass --force to "
                              "replace it or choose another --out")
    if saved is None:
        check_empty(out, force, hint="it holds no earlier comparison; choose another --out or pass --force")
        return bool(force and ours)
    return False


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


def _storage(url: str):
    """An Optuna RDB storage with heartbeats (a trial whose process died is marked failed once it has been
    silent for ``GRACE`` seconds). Two processes creating a fresh database's schema at the same moment (the
    loser gets an ``IntegrityError`` or "already exists") retry; a URL that does not connect is named."""
    optuna = require("optuna", "the comparison's tuning")
    from sqlalchemy import exc

    for attempt in range(10):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
        except (exc.IntegrityError, exc.ProgrammingError, exc.InternalError) as err:  # a concurrent first start
            if attempt == 9:
                raise ValueError(f"--storage {url}: could not create the study tables: "
                                 f"{str(err).splitlines()[0]}") from None
            time.sleep(0.1 + random.random() * 0.4 * (attempt + 1))
        except (exc.ArgumentError, exc.NoSuchModuleError, exc.OperationalError) as err:
            raise ValueError(f"--storage {url}: cannot open it ({str(err).splitlines()[0]})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _load_study(config: CompareConfig, optimizer: str, worker: int = 0, url: str | None = None):
    """The optimizer's study. Its sampler's seed is derived from the seed, the worker and the number of trials
    the study already holds, so a re-run (after a kill, or to add trials) continues with new points instead of
    replaying the first run's, and parallel workers do not propose the same points."""
    optuna = require("optuna", "the comparison's tuning")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(url or config.storage_url())
    name = study_name(config, optimizer)
    for attempt in range(10):
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
            break
        except optuna.exceptions.DuplicatedStudyError:  # created by another process between check and insert
            time.sleep(0.1 + random.random() * 0.3)
    else:  # pragma: no cover
        study = optuna.load_study(study_name=name, storage=storage)
    seed = (config.seed * 1009 + worker * 7919 + len(study.trials) * 104729) % 2**32
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def _completed(study) -> int:
    optuna = require("optuna", "the comparison's tuning")

    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def fail_orphaned_trials(study) -> list[int]:
    """Mark the study's RUNNING trials failed: call only when no process can still be running one (the
    comparison's own SQLite study, under the output folder's lock). Returns their numbers."""
    optuna = require("optuna", "the comparison's tuning")
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
        failed.append(t.number)
    return failed


def _capped(config: CompareConfig, objective):
    """``objective`` that starts only while fewer than ``config.trials`` trials are complete or running ahead
    of it: several processes on one study never overshoot ``--trials`` (an extra trial is pruned unrun)."""
    optuna = require("optuna", "the comparison's tuning")
    live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)

    def capped(trial) -> float:
        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=live) if t.number < trial.number]
        if len(ahead) >= config.trials:
            trial.study.stop()
            raise optuna.TrialPruned(f"the study already has {config.trials} trials")
        return objective(trial)

    return capped


def run_worker(config_dict: dict[str, Any], optimizer: str, n_trials: int, worker: int = 0,
               url: str | None = None) -> None:
    """One tuning worker (a process): adds up to ``n_trials`` trials to the shared study, stopping once it
    holds ``config.trials`` complete ones (optuna's ``MaxTrialsCallback``)."""
    optuna = require("optuna", "the comparison's tuning")
    config = CompareConfig(**config_dict)
    study = _load_study(config, optimizer, worker, url)
    study.optimize(_capped(config, _objective(config, optimizer)), n_trials=n_trials,
                   callbacks=[optuna.study.MaxTrialsCallback(config.trials,
                                                              states=(optuna.trial.TrialState.COMPLETE,))])


def _worker_failure(optimizer: str, failed: list[tuple[int, Any]]) -> ChildProcessError:
    parts = []
    for worker, proc in failed:
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"failed with exit code {code}"
        parts.append(f"tuning worker {worker} for {optimizer} (pid {proc.pid}) {how}")
    return ChildProcessError(f"{'; '.join(parts)}; the trials finished so far are kept in the study — run the same "
                             "command again to continue it")


def tune(config: CompareConfig, optimizer: str, url: str | None = None, *, own_study: bool = False) -> Any:
    """Bring the optimizer's study up to ``config.trials`` complete trials (resuming what is stored), split
    over ``config.workers`` processes. ``own_study``: no other process can be using the study (the output
    folder's lock is held and the storage is its SQLite file), so trials left RUNNING by a killed run are
    marked failed at once (other storages rely on Optuna's heartbeat)."""
    url = url or config.storage_url()
    study = _load_study(config, optimizer, url=url)
    if own_study:
        fail_orphaned_trials(study)
    missing = config.trials - _completed(study)
    if missing > 0:
        workers = min(config.workers, missing)
        shares = [missing // workers + (1 if w < missing % workers else 0) for w in range(workers)]
        if workers == 1:
            run_worker(asdict(config), optimizer, missing, 0, url)
        else:
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=run_worker, args=(asdict(config), optimizer, n, w, url))
                     for w, n in enumerate(shares)]
            try:
                for p in procs:
                    p.start()
                for p in procs:
                    p.join()
            finally:
                for p in procs:
                    if p.pid is not None and p.is_alive():
                        p.kill()
                        p.join()
            failed = [(w, p) for w, p in enumerate(procs) if p.exitcode != 0]
            if failed:
                raise _worker_failure(optimizer, failed)
    return _load_study(config, optimizer, url=url)


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

    def _repr_html_(self) -> str:
        """Inline display in notebooks: the tuned optimizers' curves and the summary table."""
        from descentlab.train.history import notebook_html, picture_of

        def draw(path: Any) -> None:
            from descentlab.lab.compare_report import _figures
            from descentlab.outputs import save_figure_atomically

            save_figure_atomically(_figures(self)[0], path)

        rows = self.summary()
        headers = list(dict.fromkeys(k for row in rows for k in row))
        return notebook_html(f"comparison on {self.config.dataset} · {self.config.model}",
                             picture_of(draw) if self.runs else None, headers,
                             [[row.get(k, "") for k in headers] for row in rows])

    def summary(self) -> list[dict[str, Any]]:
        """One row per optimizer: best setting, test metric mean ± std, time-to-target."""
        rows = []
        for name, runs in self.runs.items():
            ok = [r for r in runs if not r["diverged"]]
            metric = "test_accuracy" if ok and ok[0].get("test_accuracy") is not None else "test_loss"
            values = [r[metric] for r in ok]
            steps = [r["steps_to_target"] for r in ok if r["steps_to_target"] is not None]
            secs = [r["seconds_to_target"] for r in ok if r["seconds_to_target"] is not None]
            # evaluations of the loss and its gradient per step: 1 for a gradient method; L-BFGS (step(closure))
            # makes several per step on the same batch, which fit counts
            last = [r["epochs"][-1] for r in ok if r["epochs"] and r["epochs"][-1].get("steps")]
            per_step = [row.get("evaluations", row["steps"]) / row["steps"] for row in last]
            rows.append({"optimizer": name, **{f"best_{k}": v for k, v in self.best[name].items()},
                         "metric": metric, "mean": statistics.fmean(values) if values else math.nan,
                         "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                         "seeds": len(runs), "diverged": len(runs) - len(ok),
                         "reached_target": len(steps),
                         "median_steps_to_target": statistics.median(steps) if steps else None,
                         "median_seconds_to_target": statistics.median(secs) if secs else None,
                         "evaluations_per_step": statistics.fmean(per_step) if per_step else None})
        return rows


def compare(config: CompareConfig, write_to: str | os.PathLike | None = None) -> CompareResult:
    """Tune every optimizer, re-run the best setting with ``config.seeds`` seeds, write the report (into
    ``write_to`` when given — a staging folder that replaces ``config.out`` afterwards — else ``config.out``)."""
    from descentlab.lab.compare_report import write_report
    from descentlab.outputs import write_text_atomically

    config.validate()
    out = Path(write_to if write_to is not None else config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / IDENTITY_FILE, json.dumps(config.identity(), indent=1))
    url = config.storage_url(out)
    result = CompareResult(config)
    for name in config.optimizers:
        study = tune(config, name, url, own_study=config.storage is None)
        for t in study.trials:
            if t.value is not None:
                result.trials.append({"optimizer": name, "trial": t.number, "value": t.value,
                                      "diverged": t.user_attrs.get("diverged", False), **t.user_attrs.get("params", {})})
        result.best[name] = best_params(study, config, name)
        result.runs[name] = [train_setting(config, name, result.best[name], seed=1000 + s) for s in range(config.seeds)]
    write_report(result, out)
    return result
