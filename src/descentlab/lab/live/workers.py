"""The new runs of one race request, computed side by side: this process and ``count`` worker processes.

A cold race (a click on the map) recomputes every optimizer's run, each a few milliseconds of optimizer steps
in Python; the runs are independent, so on a machine with more than one core they are shared out: this process
keeps one share and sends each idle worker another over its own pipe, then waits for theirs. Every run is still
made by :func:`descentlab.lab.live.runner.compute_run` — descentlab's own optimizer class stepped directly — in
whichever process, so the answer is the same bytes (tests/test_live_lab.py checks it).

Workers are started with ``spawn`` (a fresh interpreter: forking a process that runs threads or OpenMP is not
safe), each warmed by a small race before it reports ready, limited to one torch thread. A worker busy with
another request is skipped; one that died is dropped and its share computed here, so a request never fails
because a worker is gone (or stuck: after ANSWER_TIMEOUT seconds it is dropped too).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

from descentlab.lab.live.runner import RunTask, compute_run

#: workers :func:`default_count` starts at most (a race has at most a dozen runs)
MAX_DEFAULT_WORKERS = 3
#: seconds a request waits for a worker's share (a share is a few runs of at most 5000 steps: well under a second)
ANSWER_TIMEOUT = 60.0


def default_count() -> int:
    """One worker fewer than this process may use cores (``os.sched_getaffinity``, else ``os.cpu_count``),
    at most :data:`MAX_DEFAULT_WORKERS`: 0 on one core, 1 on two."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, MAX_DEFAULT_WORKERS))


def _worker_main(conn: Any) -> None:
    """A worker's loop: ``(landscape, [task, …])`` in, ``("ok", [run bytes, …])`` or ``("error", text)`` out.
    Ctrl-C in the terminal reaches the whole process group: a worker leaves stopping to the server (which closes
    its pipe, or terminates it), so the learner sees one clean stop, not a traceback per worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    from descentlab.lab.live import api

    api.race_bytes({"landscape": "bowl", "steps": 2, "optimizers": ["sgd", "adam"]}, cache=None)  # warm
    conn.send("ready")
    problems: dict[str, Any] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        spec_key, spec, tasks = message
        try:
            problem = problems.get(spec_key)
            if problem is None:
                if len(problems) > 64:
                    problems.clear()
                problem = problems[spec_key] = api.problem_of(spec)
            conn.send(("ok", [compute_run(problem, task) for task in tasks]))
        except Exception as err:  # noqa: BLE001 - sent back; the request's process computes the share itself
            conn.send(("error", f"{type(err).__name__}: {err}"))


class _Worker:
    def __init__(self, context: Any) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True,
                                       name="descentlab-lab-worker")
        self.process.start()
        child.close()
        self.lock = threading.Lock()
        self.ready = False
        self.alive = True


class RunWorkers:
    """``count`` worker processes that share the new runs of a request with the process that received it."""

    def __init__(self, count: int) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"workers must be an integer >= 0 (0: compute every run in this process), got {count!r}")
        context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(context) for _ in range(count)]

    @property
    def count(self) -> int:
        """Workers alive."""
        return sum(w.alive for w in self._workers)

    def wait_ready(self, timeout: float = 120.0) -> int:
        """Wait until every worker has started and warmed up (a worker that fails to is dropped); return how many
        are ready."""
        for worker in self._workers:
            if worker.ready or not worker.alive:
                continue
            try:
                worker.ready = worker.conn.poll(timeout) and worker.conn.recv() == "ready"
            except (EOFError, OSError):
                worker.ready = False
            if not worker.ready:
                self._drop(worker)
        return self.count

    def compute(self, problem: Any, spec: Any, tasks: list[RunTask]) -> list[bytes]:
        """Every task's run (as :func:`compute_run` encodes it), in order; ``spec`` is the request's landscape
        (the workers rebuild ``problem`` from it)."""
        idle = [w for w in self._workers if w.alive and w.ready and w.lock.acquire(blocking=False)]
        shares = [list(range(i, len(tasks), len(idle) + 1)) for i in range(len(idle) + 1)]
        sent: list[tuple[_Worker, list[int]]] = []
        results: list[bytes | None] = [None] * len(tasks)
        try:
            for worker, share in zip(idle, shares[1:]):
                if not share:
                    continue
                try:
                    worker.conn.send((problem.key, spec, [tasks[i] for i in share]))
                    sent.append((worker, share))
                except (OSError, ValueError):
                    self._drop(worker)
            try:
                for i in shares[0]:
                    results[i] = compute_run(problem, tasks[i])
            finally:  # every answer is read, even when this process's share raised: the pipes stay in step
                for worker, share in sent:
                    try:
                        if not worker.conn.poll(ANSWER_TIMEOUT):  # stuck: dropped, its share computed here
                            raise TimeoutError
                        status, answer = worker.conn.recv()
                    except (EOFError, OSError):
                        self._drop(worker)
                        continue
                    if status == "ok" and len(answer) == len(share):
                        for i, text in zip(share, answer):
                            results[i] = text
        finally:
            for worker in idle:
                worker.lock.release()
        for i, text in enumerate(results):  # a share a worker did not bring back: computed here
            if text is None:
                results[i] = compute_run(problem, tasks[i])
        return results  # type: ignore[return-value]

    def _drop(self, worker: _Worker) -> None:
        worker.alive = False
        try:
            worker.conn.close()
        except OSError:
            pass
        if worker.process.is_alive():
            worker.process.terminate()

    def close(self) -> None:
        """Stop every worker (each finishes the share it is computing)."""
        for worker in self._workers:
            if worker.alive:
                try:
                    worker.conn.send(None)
                except (OSError, ValueError):
                    pass
        for worker in self._workers:
            worker.process.join(timeout=5)
            self._drop(worker)
