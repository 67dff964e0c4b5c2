"""The live lab's worker processes (descentlab.lab.live.workers): a cold race shared with them is the same bytes
as one computed in the server's process; a worker that dies or is busy costs speed, never an answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from urllib.request import Request, urlopen

import pytest

from descentlab.lab.live import api, make_server
from descentlab.lab.live.workers import RunWorkers, default_count
from descentlab.lab.race import DEFAULT_OPTIMIZERS

pytestmark = pytest.mark.slow  # each test starts worker interpreters (torch imported afresh: seconds)

BODY = {"landscape": "rosenbrock", "steps": 150, "noise": 0.2, "seed": 3,
        "optimizers": [{"name": n} for n in DEFAULT_OPTIMIZERS]
        + [{"name": "adam", "options": {"lr": 0.05}, "schedule": {"name": "exponential", "options": {"gamma": 0.99}},
            "label": "adam, decayed"}]}


@pytest.fixture(scope="module")
def workers():
    pool = RunWorkers(2)
    assert pool.wait_ready() == 2
    yield pool
    pool.close()


def test_runs_shared_with_workers_are_the_same_bytes(workers):
    alone = api.race_bytes(BODY, cache=None)
    shared = api.race_bytes(BODY, cache=None, workers=workers)
    assert shared == alone
    typed = {**BODY, "landscape": {"f": "(1 - x)^2 + 5*(y - x^2)^2", "domain": [[-2, 2], [-1, 3]]},
             "start": [-1.5, 2.0]}
    assert api.race_bytes(typed, cache=None, workers=workers) == api.race_bytes(typed, cache=None)


def test_a_dead_worker_is_dropped_and_its_share_computed_here():
    pool = RunWorkers(1)
    try:
        assert pool.wait_ready() == 1
        pool._workers[0].process.kill()
        pool._workers[0].process.join(timeout=30)
        assert api.race_bytes(BODY, cache=None, workers=pool) == api.race_bytes(BODY, cache=None)
        assert pool.count == 0
    finally:
        pool.close()


def test_a_stuck_worker_is_dropped_after_the_timeout(monkeypatch):
    from descentlab.lab.live import workers as workers_module

    pool = RunWorkers(1)
    process = pool._workers[0].process
    try:
        assert pool.wait_ready() == 1
        os.kill(process.pid, signal.SIGSTOP)  # alive, but never answers
        monkeypatch.setattr(workers_module, "ANSWER_TIMEOUT", 0.5)
        assert api.race_bytes(BODY, cache=None, workers=pool) == api.race_bytes(BODY, cache=None)
        assert pool.count == 0
    finally:
        os.kill(process.pid, signal.SIGCONT)
        pool.close()
    assert not process.is_alive()


def test_a_busy_worker_is_skipped(workers):
    for worker in workers._workers:
        assert worker.lock.acquire(blocking=False)
    try:
        assert api.race_bytes(BODY, cache=None, workers=workers) == api.race_bytes(BODY, cache=None)
    finally:
        for worker in workers._workers:
            worker.lock.release()


def test_a_bad_count_is_refused_by_name():
    with pytest.raises(ValueError, match=r"workers must be an integer >= 0 .*got -1"):
        RunWorkers(-1)
    with pytest.raises(ValueError, match="workers must be an integer"):
        RunWorkers(True)  # type: ignore[arg-type]
    assert 0 <= default_count() <= 3


def test_a_server_with_workers_answers_and_stops_them():
    server = make_server(workers=1)
    processes = [w.process for w in server.workers._workers]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        req = Request(server.url + "api/race", data=json.dumps(BODY).encode(), method="POST",
                      headers={"Content-Type": "application/json"})
        with urlopen(req, timeout=120) as res:
            answer = json.loads(res.read())
        assert answer["computed"] == len(BODY["optimizers"])
        assert answer["runs"] == api.race(BODY, cache=None)["runs"]
    finally:
        server.shutdown()
        server.server_close()
    for process in processes:
        process.join(timeout=30)
        assert not process.is_alive()


def test_the_cli_refuses_a_bad_workers_value():
    result = subprocess.run([sys.executable, "-m", "descentlab", "lab", "--workers", "-2", "--no-browser"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--workers" in result.stderr and "[0, 64]" in result.stderr
