"""Fair comparison with Optuna: resumable SQLite studies, parallel workers, report outputs; PostgreSQL."""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from descentlab.cli import main
from descentlab.lab.compare import CompareConfig, compare
from descentlab.lab.compare_report import performance_profile


def _rows(path):
    return list(csv.DictReader(open(path)))


def _config(out, **kwargs):
    base = dict(dataset="iris", model="logistic", optimizers=["sgd", "adam"], out=str(out), seeds=2, epochs=3,
                trials=3, target=("val_accuracy", 0.6), batch_size=16)
    return CompareConfig(**{**base, **kwargs})


def test_compare_tunes_reruns_and_reports(tmp_path):
    result = compare(_config(tmp_path))
    trials = _rows(tmp_path / "trials.csv")
    assert len(trials) == 6 and {t["optimizer"] for t in trials} == {"sgd", "adam"}
    for name in ("sgd", "adam"):  # the best setting is the trial with the lowest validation loss
        mine = [t for t in trials if t["optimizer"] == name]
        best = min(mine, key=lambda t: float(t["value"]))
        assert result.best[name]["lr"] == pytest.approx(float(best["lr"]))
    runs = _rows(tmp_path / "runs.csv")
    assert len(runs) == 2 * 2 * 3  # optimizers × seeds × epochs
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    for row in summary:
        assert row["seeds"] == 2 and row["metric"] == "test_accuracy" and 0 <= row["mean"] <= 1
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "http" not in html.split("<body>")[1]
    for png in ("curves.png", "profile.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_rerun_resumes_the_study_and_adds_trials(tmp_path):
    compare(_config(tmp_path, optimizers=["sgd"], trials=2, seeds=1))
    first = _rows(tmp_path / "trials.csv")
    compare(_config(tmp_path, optimizers=["sgd"], trials=4, seeds=1))
    second = _rows(tmp_path / "trials.csv")
    assert len(second) == 4 and second[:2] == first  # kept, not started over


@pytest.mark.slow
def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    compare(_config(tmp_path, optimizers=["adam"], trials=4, seeds=1, workers=2))
    trials = _rows(tmp_path / "trials.csv")
    assert len(trials) == 4 and len({t["lr"] for t in trials}) == 4  # no duplicated proposals


def test_performance_profile():
    profile = performance_profile({"a": [10, 20, np.inf], "b": [20, 10, 30]}, np.array([1.0, 2.0, 4.0]))
    assert profile["a"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert profile["b"].tolist() == pytest.approx([2 / 3, 1.0, 1.0])


@pytest.mark.parametrize("kwargs,fragment", [({"optimizers": ["adma"]}, "Did you mean 'adam'"),
                                             ({"dataset": "irsi"}, "Did you mean 'iris'"),
                                             ({"tune": ("lr", "momentum")}, "unknown tunable"),
                                             ({"seeds": 0}, "seeds must be"),
                                             ({"target": ("test_accuracy", 0.9)}, "target metric")])
def test_bad_config(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        compare(_config(tmp_path, **kwargs))


def test_cli_compare(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "wine", "--optimizers", "sgd,rmsprop", "--seeds", "1", "--budget", "2", "--trials", "2",
                 "--batch-size", "16", "--target", "val_accuracy=0.8", "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    assert main(["compare", "wine", "--out", str(other)]) == 2
    assert "holds no earlier comparison" in capsys.readouterr().err
    assert main(["compare", "wine", "--target", "accuracy", "--out", str(tmp_path / "t")]) == 2


# ---- PostgreSQL: a real server on loopback, two worker processes against one study -------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    bindir = _postgres_bin()
    if bindir is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
                       capture_output=True, timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server could not be installed (apt-get install postgresql failed or is not allowed)")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2 speaks postgresql:// through psycopg 3)
    except ImportError:
        pytest.skip('psycopg is not installed (pip install "psycopg[binary]")')
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="descentlab-pg-"))  # not under pytest's root-only temp folder
    run_as = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    done = subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"initdb failed: {done.stderr[-2000:]}")
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                             f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    config = _config(tmp_path, optimizers=["sgd"], trials=4, seeds=1, workers=2, storage=postgres_url)
    compare(config)
    import optuna

    from descentlab.lab.compare import study_name

    study = optuna.load_study(study_name=study_name(config, "sgd"), storage=postgres_url)
    assert len([t for t in study.trials if t.value is not None]) == 4
    assert not (tmp_path / "study.db").exists()  # everything went to the server


def test_a_time_budget_ends_runs_by_the_clock(tmp_path, capsys):
    out = tmp_path / "timed"
    assert main(["compare", "iris", "--optimizers", "adam", "--seeds", "1", "--budget", "0.3s", "--trials", "1",
                 "--batch-size", "1", "--out", str(out)]) == 0
    runs = _rows(out / "runs.csv")
    assert runs and float(runs[-1]["seconds"]) < 0.3 + 0.5  # stopped by the clock, not after 10 epochs
    assert "0.3 s each" in (out / "report.html").read_text()
    assert main(["compare", "iris", "--budget", "soon", "--out", str(tmp_path / "bad")]) == 2
    assert "--budget must be EPOCHS" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs an epoch budget"):
        compare(_config(tmp_path / "s", seconds=1.0, tune=("lr", "schedule")))


def test_fit_time_budget_marks_the_partial_epoch():
    import descentlab
    from descentlab import datasets, models

    d = datasets.load("digits")
    model = models.build("logistic", 64, 10)
    # ≥ 1 ms a step (the sleep), so an epoch of ≈ 1 000 steps outlasts the 0.2 s budget on any machine: the budget
    # runs out mid-epoch (a fast machine once finished whole epochs and stopped at an epoch's end)
    h = descentlab.fit(model, d.train, descentlab.SGD(model.parameters(), lr=0.1), loss="cross_entropy",
                       epochs=10_000, batch_size=1, max_seconds=0.2, progress=False,
                       step_callback=lambda step: time.sleep(0.001))
    assert h.epochs[-1].get("partial") is True and len(h.epochs) == 1 and h.final["seconds"] < 2.0
    with pytest.raises(ValueError, match="max_seconds"):
        descentlab.fit(model, d.train, descentlab.SGD(model.parameters(), lr=0.1), loss="cross_entropy",
                       epochs=1, max_seconds=0, progress=False)


#: The registry rows added with the torch.optim family, Lion and schedule-free: each trains a real model in compare.
NEW_ROWS = ["asgd", "adafactor", "adamax", "radam", "rprop", "lion", "schedulefree-adamw", "schedulefree-sgd", "muon",
            "lbfgs"]


@pytest.mark.slow  # about 10 s: ten optimizers, each tuned and re-run
def test_compare_runs_every_new_row_on_real_data(tmp_path):
    """A tiny comparison on scikit-learn's iris (2 trials, 2 epochs, 1 seed) over the new rows: every one is tuned
    and re-run to a finite result — Muon on the weight matrix with AdamW on the bias, L-BFGS through step(closure),
    whose evaluations per step are reported (more than one), the others one per step."""
    import math

    result = compare(_config(tmp_path, optimizers=NEW_ROWS, trials=2, seeds=1, epochs=2))
    summary = {row["optimizer"]: row for row in result.summary()}
    assert list(summary) == NEW_ROWS
    for name, row in summary.items():
        assert row["diverged"] == 0 and math.isfinite(row["mean"]) and 0 <= row["mean"] <= 1, (name, row)
        assert math.isfinite(result.runs[name][0]["best_val_loss"]), name
        trials = [t for t in result.trials if t["optimizer"] == name]
        assert len(trials) == 2 and all(math.isfinite(t["value"]) for t in trials), name
        if name != "lbfgs":
            assert row["evaluations_per_step"] == 1.0, name
    assert summary["lbfgs"]["evaluations_per_step"] > 1
    runs = [r for r in _rows(tmp_path / "runs.csv") if r["optimizer"] == "lbfgs"]
    assert len(runs) == 2 and int(runs[-1]["evaluations"]) > int(runs[-1]["steps"])
    assert "f, ∇f evaluations per step" in (tmp_path / "report.html").read_text()


def test_compare_refuses_a_sparse_gradient_row_before_any_study(tmp_path, capsys):
    with pytest.raises(ValueError, match="sparseadam cannot train the models here .*sparse gradients only"):
        compare(_config(tmp_path / "a", optimizers=["adam", "sparseadam"]))
    assert not (tmp_path / "a" / "study.db").exists()
    assert main(["compare", "iris", "--optimizers", "adam,sparseadam", "--out", str(tmp_path / "b")]) == 2
    assert "--optimizers: sparseadam cannot train the models here" in capsys.readouterr().err
