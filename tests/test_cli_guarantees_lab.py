"""Issue 18 beyond ``train``: compare, race, the rendezvous of ``--nproc``, one-line errors for every kind of bad
input, HTML escaping — each through real processes where a user would meet it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli_guarantees_train import cli, one_line_error
from test_lab_compare import postgres_url  # noqa: F401  (the fixture: a throw-away PostgreSQL server)

COMPARE = ["compare", "iris", "--optimizers", "sgd", "--seeds", "1", "--budget", "2"]


def _trials(db: Path) -> list[tuple[int, str, float | None]]:
    """(number, state, lr) of every trial in a study.db (read with sqlite3: no Optuna needed)."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT t.number, t.state, p.param_value FROM trials t LEFT JOIN trial_params p "
                           "ON p.trial_id = t.trial_id AND p.param_name = 'lr' ORDER BY t.number").fetchall()
    return [(n, s, v) for n, s, v in rows]


# 5 -------------------------------------------------------------------------------------------------------
def test_compare_refuses_another_comparisons_folder_unless_forced(tmp_path):
    out = tmp_path / "cmp"
    assert cli(*COMPARE, "--trials", "2", "--out", out).returncode == 0
    report = (out / "report.html").read_bytes()
    line = one_line_error(cli("compare", "wine", "--optimizers", "sgd", "--seeds", "1", "--budget", "2",
                              "--trials", "2", "--out", out), "compare")
    assert "holds another comparison" in line and "'iris'" in line and "'wine'" in line and "--force" in line
    assert (out / "report.html").read_bytes() == report
    done = cli("compare", "wine", "--optimizers", "sgd", "--seeds", "1", "--budget", "2", "--trials", "2",
               "--force", "--out", out)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["config"]["dataset"] == "wine"
    assert not list(out.glob(".descentlab-*"))


# 6 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a?1", "p%41", "b#2"])
def test_the_sqlite_study_is_always_inside_out(tmp_path, name):
    out = tmp_path / "runs" / name
    done = cli(*COMPARE, "--trials", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [name]  # nothing beside --out
    assert len(_trials(out / "study.db")) == 1


# 9 -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_rerun_after_a_kill_continues_the_sampler_and_fails_orphans(tmp_path):
    out = tmp_path / "cmp"
    args = [sys.executable, "-m", "descentlab", *COMPARE, "--budget", "3", "--trials", "12", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Caught mid-trial whatever the machine's speed: once 4 trials are done the process is frozen (SIGSTOP) while
    # the study is read, killed if its last trial is running, else let go on (SIGCONT) and looked at again.
    deadline = time.monotonic() + 300
    caught = False
    while not caught and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
        try:
            states = [s for _, s, _ in _trials(out / "study.db")]
        except sqlite3.Error:
            continue
        if states.count("COMPLETE") < 4:
            continue
        proc.send_signal(signal.SIGSTOP)
        try:
            caught = [s for _, s, _ in _trials(out / "study.db")][-1:] == ["RUNNING"]
        except sqlite3.Error:
            caught = False
        if not caught:
            proc.send_signal(signal.SIGCONT)
    assert caught, "compare finished (or stalled) before one of its trials could be caught running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "RUNNING" in [s for _, s, _ in _trials(out / "study.db")]
    done = cli(*COMPARE, "--budget", "3", "--trials", "12", "--out", out)
    assert done.returncode == 0, done.stderr
    trials = _trials(out / "study.db")
    assert "RUNNING" not in [s for _, s, _ in trials]  # the killed run's trial is marked failed
    complete = [lr for _, s, lr in trials if s == "COMPLETE"]
    assert len(complete) == 12 and len(set(complete)) == 12  # no setting tried twice


@pytest.mark.slow
def test_two_processes_never_overshoot_trials(tmp_path):
    out = tmp_path / "cmp"
    assert cli(*COMPARE, "--trials", "0", "--out", out).returncode == 0  # the study's folder, owned by neither
    url = f"sqlite:///{out / 'study.db'}"
    procs = [subprocess.Popen([sys.executable, "-m", "descentlab", *COMPARE, "--trials", "6", "--storage", url,
                               "--out", str(tmp_path / f"w{i}")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()
    states = [s for _, s, _ in _trials(out / "study.db")]
    assert states.count("COMPLETE") == 6


# 13 ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_first_starts_on_a_fresh_postgresql_database(tmp_path, postgres_url):
    base = postgres_url  # the fixture skips, saying why, where no PostgreSQL server can be started
    import sqlalchemy

    name = f"race{os.getpid()}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as con:
        con.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = base.rsplit("/", 1)[0] + f"/{name}"
    procs = [subprocess.Popen([sys.executable, "-m", "descentlab", *COMPARE, "--trials", "2", "--storage", url,
                               "--out", str(tmp_path / f"w{i}")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    errors = [p.stderr.read() for p in procs]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], errors
    assert not any("IntegrityError" in e for e in errors)


# 7 -------------------------------------------------------------------------------------------------------
def _listening(pid: int) -> list[str]:
    """Local addresses of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                found.append(cols[1])
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_nproc_listens_on_loopback_only(tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.Popen([sys.executable, "-m", "descentlab", "train", "digits", "--model", "mlp", "--epochs",
                             "100000", "--batch-size", "64", "--nproc", "2", "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # "training on 2 processes (gloo): rank 0 pid …, rank 1 pid …"
        pids = [int(part.split()[-1]) for part in first.split(":", 1)[1].split(",")]
        deadline = time.monotonic() + 120
        while not (out / "checkpoints").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        addresses = [a for pid in pids + [proc.pid] for a in _listening(pid)]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    loopback = ("0100007F:", "00000000000000000000000001000000:")
    assert addresses and all(a.startswith(loopback) for a in addresses), addresses


# 15 ------------------------------------------------------------------------------------------------------
def test_a_race_killed_while_writing_is_replaced_by_the_same_command(tmp_path):
    out = tmp_path / "race"
    out.mkdir()
    (out / "race.png").write_bytes(b"half")  # what a race killed before its report leaves
    (out / f".descentlab-new-{2**22 + 7}").mkdir()  # its staging folder (a pid that does not run)
    done = cli("race", "ravine", "--optimizers", "sgd", "--steps", "20", "--frames", "4", "--out", out)
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").exists() and (out / "race.png").read_bytes() != b"half"
    assert not list(out.glob(".descentlab-*"))
    line = one_line_error(cli("race", "ravine", "--optimizers", "sgd", "--steps", "20", "--out", out), "race")
    assert "--force" in line  # a complete race is still protected


# 19 ------------------------------------------------------------------------------------------------------
def test_every_config_field_is_escaped_in_the_compare_report():
    from descentlab.lab.compare import CompareConfig, CompareResult
    from descentlab.lab.compare_report import _html

    config = CompareConfig("iris", "logistic", ["sgd"], "x", tune=("<script>alert(1)</script>",))
    page = _html(CompareResult(config), [], {"curves.png": "", "profile.png": ""})
    assert "<script>" not in page and "&lt;script&gt;" in page


# 12 / 14 / 17 / 11: one line naming the flag and the allowed values ------------------------------------------
RUNNER = r"""
import contextlib, io, json, sys, traceback
from descentlab.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    except BaseException:
        code, err = -1, io.StringIO(traceback.format_exc())
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def run_many(cases: list[list[str]], timeout: float = 600) -> list[tuple[int, str]]:
    """Run ``main(args)`` for every case in one fresh process; (exit code, stderr) each (-1: it raised)."""
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return [(code, err) for code, err in json.loads(done.stdout.splitlines()[-1])]


BAD = [
    (["train", "iris", "--opt", "bogus=1"], ["--opt", "no option 'bogus'", "its options are"]),
    (["train", "iris", "--opt", "lr=5"], ["--opt", "give the rate with --lr"]),
    (["race", "ravine", "--opt", "sgd:bogus=1"], ["--opt sgd", "no option 'bogus'"]),
    (["race", "ravine", "--opt", "sgd:lr=5"], ["--opt sgd", "--lr"]),
    (["lr-find", "iris", "--opt", "bogus=1"], ["--opt", "no option 'bogus'"]),
    (["compare", "iris", "--storage", "abc"], ["--storage", "sqlite:///", "'abc'"]),
    (["train", "iris", "--model", "quadratic"], ["--model quadratic", "logistic"]),
    (["train", "iris", "--epochs", "99999999999"], ["--epochs", "[1, 100000]"]),
    (["race", "ravine", "--steps", "99999999999"], ["--steps", "[1, 100000]"]),
    (["race", "ravine", "--frames", "99999999999"], ["--frames", "[2, 1000]"]),
    (["lr-find", "iris", "--steps", "99999999999"], ["--steps", "[10, 100000]"]),
    (["train", "iris", "--nproc", "99999999999"], ["--nproc", "<= "]),
    (["race", "ravine", "--lr", "sgd=-0.5"], ["--lr sgd", "> 0", "-0.5"]),
    (["compare", "iris", "--budget", "infs"], ["--budget", "SECONDS", "'infs'"]),
    (["race", "ravine", "--noise", "inf"], ["--noise", "finite number >= 0", "'inf'"]),
    (["race", "ravine", "--tol", "inf"], ["--tol", "finite number > 0"]),
    (["train", "iris", "--seed", "-1"], ["--seed", "[0, 4294967295]", "'-1'"]),
    (["lr-find", "iris", "--batch-size", "abc"], ["--batch-size", "full or a positive integer", "'abc'"]),
    (["train", "iris", "--lr", "nan"], ["--lr", "finite number >= 0"]),
    (["compare", "iris", "--target", "val_loss=inf"], ["--target", "finite"]),
]


def test_bad_inputs_are_one_line_naming_the_flag_and_the_allowed_values(tmp_path):
    cases = [args + ["--out", str(tmp_path / f"out{i}")] for i, (args, _) in enumerate(BAD)]
    for (args, fragments), (code, err) in zip(BAD, run_many(cases)):
        assert code == 2 and "Traceback" not in err, (args, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"descentlab {args[0]}: error: "), (args, err)
        for fragment in fragments:
            assert fragment in lines[0], (args, fragment, lines[0])
    assert list(tmp_path.iterdir()) == []  # every one stopped before touching its --out


def _workers(parent: int) -> list[int]:
    """Pids of the multiprocessing children of ``parent`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_compare_worker_is_one_line(tmp_path):
    out = tmp_path / "cmp"
    proc = subprocess.Popen([sys.executable, "-m", "descentlab", *COMPARE, "--budget", "20s", "--trials", "2",
                             "--workers", "2", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    children: list[int] = []
    while time.monotonic() < deadline and len(children) < 2:
        time.sleep(0.3)
        children = _workers(proc.pid)
    assert children, "no tuning worker started"
    time.sleep(2)
    os.kill(children[0], signal.SIGKILL)
    stderr = proc.communicate(timeout=600)[1]
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "killed by signal SIGKILL" in errors[0] and "run the same command again" in errors[0]
