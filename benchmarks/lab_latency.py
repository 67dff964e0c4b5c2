"""Latency of the live lab, measured through its HTTP API as the page uses it (docs/benchmarks.md, "The live lab").

    python benchmarks/lab_latency.py [--repeats 30] [--steps 500] [--workers 0,default] [--profile]

For each ``--workers`` setting (0: every run in the server's process; ``default``: the command's own choice,
one worker process per core beyond the first), starts ``descentlab lab --port 0 --no-browser`` in its own
process and times, over one keep-alive connection:

* **cold**: the 7 default optimizers × ``--steps`` steps, every run new (the start point moves a little at each
  request: what a click on the map costs);
* **one changed**: the same race with one optimizer's rate changed at each request (a dragged slider: the other
  six come from the server's cache);
* **all cached**: the same request again.

The last two also as the page asks (``"known"``: the keys of the runs it holds, which then come back as keys
only), and as a client that asks for every run in full.

Each figure is the median and the 10th–90th percentile of ``--repeats`` requests, from sending the request to
having the whole answer decoded (``json.loads``). Targets (issue 17): cold ≤ 60 ms, one changed ≤ 15 ms.

``--profile`` also times, in this process, what one step costs on the reference executor: ``optimizer.step()``
as torch.optim wraps it, the bare descentlab ``step`` the lab calls, and inside it the plan and the rule alone;
then cProfile's top entries for a cold race.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam")


def spread(times: list[float]) -> str:
    ms = sorted(t * 1e3 for t in times)
    p10, p90 = ms[int(0.1 * (len(ms) - 1))], ms[int(0.9 * (len(ms) - 1))]
    return f"median {statistics.median(ms):7.1f} ms   (p10 {p10:6.1f}, p90 {p90:6.1f}, n = {len(ms)})"


def timed_post(conn: http.client.HTTPConnection, body: dict) -> tuple[float, dict]:
    data = json.dumps(body).encode()
    start = time.perf_counter()
    conn.request("POST", "/api/race", data, {"Content-Type": "application/json"})
    res = conn.getresponse()
    answer = json.loads(res.read())
    elapsed = time.perf_counter() - start
    if res.status != 200:
        raise RuntimeError(answer)
    return elapsed, answer


def http_figures(repeats: int, steps: int, workers: str) -> None:
    extra = [] if workers == "default" else ["--workers", workers]
    proc = subprocess.Popen([sys.executable, "-m", "descentlab", "lab", "--port", "0", "--no-browser", *extra],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = urlsplit(line.split()[3])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        base = {"landscape": "ravine", "steps": steps, "optimizers": [{"name": n} for n in OPTIMIZERS]}
        timed_post(conn, base)  # warm: the first request after start
        cold, changed, changed_page, cached, cached_page = [], [], [], [], []
        for i in range(repeats):
            t, answer = timed_post(conn, {**base, "start": [-4.5 + 1e-3 * (i + 1), 1.5]})
            assert answer["computed"] == len(OPTIMIZERS)
            cold.append(t)
        keys: list[str] = []
        size = 0
        for i in range(2 * repeats):
            body = json.loads(json.dumps(base))
            body["optimizers"][6]["options"] = {"lr": round(0.001 * (1 + 0.01 * (i + 1)), 8)}
            page = i % 2 == 1  # as the page asks: the runs it holds by key, so only the new one comes back
            if page:
                body["known"] = keys
            t, answer = timed_post(conn, body)
            assert (answer["computed"], answer["cached"]) == (1, len(OPTIMIZERS) - 1)
            keys = [r["key"] for r in answer["runs"]]
            (changed_page if page else changed).append(t)
            if not page:
                size = len(json.dumps(answer))
        for i in range(2 * repeats):
            t, answer = timed_post(conn, {**base, "known": keys} if i % 2 else base)
            assert answer["computed"] == 0
            keys = [r["key"] for r in answer["runs"]]
            (cached_page if i % 2 else cached).append(t)
        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"live lab through HTTP, --workers {workers}: {len(OPTIMIZERS)} optimizers × {steps} steps (ravine), "
              f"full answer ≈ {size / 1e3:.0f} kB; {os.cpu_count()} cores, load average {load}")
        print(f"  cold (every run new):                 {spread(cold)}   target ≤ 60 ms")
        print(f"  one lr changed, all runs sent:        {spread(changed)}")
        print(f"  one lr changed, as the page asks:     {spread(changed_page)}   target ≤ 15 ms (adam: the slowest step)")
        print(f"  nothing changed, all runs sent:       {spread(cached)}")
        print(f"  nothing changed, as the page asks:    {spread(cached_page)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WIDTHS = (10, 10, 8, 10, 9, 11)


def best(fn, n: int = 500, repeats: int = 5) -> float:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - start) / n)
    return min(out)


def profile(steps: int) -> None:
    import cProfile
    import pstats

    import torch

    from descentlab.lab.live import api
    from descentlab.lab.live.problems import builtin
    from descentlab.lab.live.runner import bare_step
    from descentlab.optim.reference import run_rule
    from descentlab.optim.registry import REGISTRY

    torch.set_num_threads(1)
    grad = builtin("ravine").grad
    print(f"\none step on a 2-element float64 tensor, impl='reference' (best of 5 × 500), µs")
    print(f"  {'optimizer':10s} {'opt.step()':>10s} {'bare step':>10s} {'plan()':>8s} {'rule only':>10s} {'lab loop':>9s}"
          f" {'bare, auto':>11s}")
    totals = [0.0] * 6
    for name in OPTIMIZERS:
        p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
        p.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
        opt = REGISTRY[name].build([p], impl="reference")
        opt.step()
        raw = bare_step(opt)
        group = opt.param_groups[0]
        plan = opt.plan(group)
        state = opt.state.get(p, {})
        here, g = p.detach().numpy(), p.grad.numpy()

        def rule() -> None:
            with torch.no_grad():
                run_rule(plan, p.detach(), p.grad, state, False)

        def loop() -> None:  # everything the lab does per step besides the step itself
            x, y = here.tolist()
            gx, gy = grad(x, y)
            g[0] = gx
            g[1] = gy

        q = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
        q.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
        auto = REGISTRY[name].build([q])  # impl="auto": the C kernels on the CPU (for comparison)
        auto.step()
        row = [best(opt.step), best(raw), best(lambda: opt.plan(group)), best(rule), best(loop), best(bare_step(auto))]
        totals = [a + b for a, b in zip(totals, row)]
        print(f"  {name:10s} " + " ".join(f"{v * 1e6:{w}.1f}" for v, w in zip(row, WIDTHS)))
    print(f"  {'7 × ' + str(steps):10s} " + " ".join(f"{v * steps * 1e3:{w - 3}.1f} ms" for v, w in zip(totals, WIDTHS)))
    body = {"landscape": "ravine", "steps": steps, "optimizers": list(OPTIMIZERS)}
    api.race_bytes(body, cache=None)
    print("\ncProfile of one cold race (7 optimizers), top 14 by own time:")
    prof = cProfile.Profile()
    prof.enable()
    api.race_bytes(body, cache=None)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--workers", default="0,default",
                        help="comma-separated `descentlab lab --workers` settings to measure one after the other "
                             "('default': the command's own choice; default: 0,default)")
    args = parser.parse_args()
    for workers in args.workers.split(","):
        http_figures(args.repeats, args.steps, workers.strip())
    if args.profile:
        profile(args.steps)


if __name__ == "__main__":
    main()
