"""``descentlab race`` / ``landscapes`` / ``demo`` as a user runs them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from descentlab.cli import main


def test_race_writes_everything_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "race"
    assert main(["race", "double_well", "--optimizers", "sgd,momentum", "--steps", "80", "--lr", "sgd=0.05",
                 "--opt", "momentum:form=sum", "--noise", "0.1", "--frames", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reached tol at step" in printed and "momentum" in printed and "min#" not in printed
    for name in ("race.png", "race.gif", "report.html", "metrics.csv"):
        assert (out / name).exists(), name
    gif = Image.open(out / "race.gif")
    assert gif.n_frames >= 5
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["optimizer"] for r in rows] == ["sgd", "momentum"] and rows[0]["lr"] == "0.05"
    png = np.asarray(Image.open(out / "race.png").convert("L"), dtype=float)
    assert png.std() > 10
    assert main(["race", "double_well", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_race_lbfgs_with_adam_reports_the_evaluations(tmp_path, capsys):
    out = tmp_path / "race"
    assert main(["race", "ravine", "--optimizers", "lbfgs,adam", "--steps", "25", "--frames", "4",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "f, ∇f evaluations" in printed and "note: lbfgs: one step is up to max_iter = 20" in printed
    rows = {r["optimizer"]: r for r in csv.DictReader(open(out / "metrics.csv"))}
    assert set(rows) == {"lbfgs", "adam"} and (out / "report.html").exists()
    lbfgs, adam = rows["lbfgs"], rows["adam"]
    assert float(lbfgs["final_f"]) < 1e-10 and lbfgs["diverged"] == "False" and lbfgs["steps_to_tol"] != ""
    assert int(lbfgs["evaluations"]) > int(lbfgs["steps_run"]) == 25 and int(lbfgs["evaluations_to_tol"]) >= 1
    assert int(adam["evaluations"]) == int(adam["steps_run"]) == 25
    assert "up to <code>max_eval</code> per step for L-BFGS" in (out / "report.html").read_text()


def test_race_refuses_muon_with_the_reason(tmp_path, capsys):
    assert main(["race", "ravine", "--optimizers", "muon,adam", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "'muon' cannot race on a landscape" in err and "muon steps 2-D parameters only" in err
    assert not (tmp_path / "x" / "report.html").exists()


@pytest.mark.parametrize("args,fragment", [
    (["race", "ravin"], "Did you mean 'ravine'"),
    (["race", "ravine", "--optimizers", "sgd,adma"], "Did you mean 'adam'"),
    (["race", "ravine", "--start", "1"], "--start must be x,y"),
    (["race", "ravine", "--lr", "sgd"], "KEY=VALUE"),
    (["race", "ravine", "--optimizers", "sgd", "--lr", "adam=0.1"], "not in the race"),
])
def test_bad_inputs(tmp_path, capsys, args, fragment):
    assert main(args + ["--out", str(tmp_path / "x")]) == 2
    assert fragment in capsys.readouterr().err


def test_landscapes_lists_all(capsys):
    assert main(["landscapes"]) == 0
    out = capsys.readouterr().out
    for name in ("bowl", "ravine", "saddle", "rosenbrock", "beale", "booth", "himmelblau", "rastrigin", "ackley",
                 "six_hump_camel", "double_well"):
        assert name in out


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys, browser):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "60"]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    for name in ("ravine", "saddle", "rosenbrock"):
        assert (out / name / "report.html").exists() and (out / name / "race_tuned.png").exists()
    dom, errors = browser.dom(out / "index.html")
    assert errors == [] and dom.count('href="') >= 3 and "digits" in dom and "lessons/index.html" in dom
    assert json.loads((out / "lessons" / "lessons.json").read_text())[0]["id"] == "gd-modes"
    assert main(["demo", "--out", str(out)]) == 2  # an earlier demo is never overwritten


def test_schedule_per_racer_from_the_cli(tmp_path, capsys):
    out = tmp_path / "sched"
    assert main(["race", "ravine", "--optimizers", "sgd,sgd@decay", "--steps", "60", "--lr", "sgd@decay=0.1,sgd=0.1",
                 "--schedule", "sgd@decay=exponential:gamma=0.9", "--frames", "4", "--out", str(out)]) == 0
    rows = {r["optimizer"]: r for r in csv.DictReader(open(out / "metrics.csv"))}
    assert set(rows) == {"sgd", "sgd@decay"}
    assert rows["sgd"] != rows["sgd@decay"]  # the decayed racer took other steps


@pytest.mark.parametrize("schedule,fragment", [
    ("sgd", "--schedule must be NAME=SCHEDULE"),
    ("adam=exponential:gamma=0.9", "--schedule adam: 'adam' is not in the race"),
    ("sgd=exponentail:gamma=0.9", "--schedule sgd: unknown schedule 'exponentail'"),
    ("sgd=exponential:gamma=2", "--schedule sgd: gamma must be in (0, 1]"),
    ("sgd=exponential:gama=0.9", "--schedule sgd: exponential: exponential() got an unexpected keyword"),
    ("sgd=piecewise:boundaries=5,values=0/0", "--schedule sgd:"),
])
def test_bad_schedules_are_refused_before_anything_is_written(tmp_path, capsys, schedule, fragment):
    out = tmp_path / "x"
    assert main(["race", "ravine", "--optimizers", "sgd", "--steps", "20", "--schedule", schedule,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
