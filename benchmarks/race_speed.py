"""Race speed against the lab's targets: a default race (7 optimizers × 500 steps) under 3 s and a tuned race
(8 optimizers × 30 rates × 1000 steps, the default run included) under 15 s, on 2 cores. Wall times of the
race computation (no pictures), median of ``--repeats`` runs.

    .venv/bin/python benchmarks/race_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descentlab.lab.race import DEFAULT_OPTIMIZERS, race

TUNED_OPTIMIZERS = DEFAULT_OPTIMIZERS + ("nadam",)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    race("ravine", ["sgd"], steps=10)  # warm-up
    for landscape in ("ravine", "rosenbrock"):
        default = [timed(lambda: race(landscape, DEFAULT_OPTIMIZERS, steps=500)) for _ in range(args.repeats)]
        tuned = [timed(lambda: race(landscape, TUNED_OPTIMIZERS, steps=1000, tune=True)) for _ in range(args.repeats)]
        print(f"{landscape:<11} default race 7 × 500: {statistics.median(default):6.2f} s (target 3 s)   "
              f"tuned race 8 × 30 × 1000: {statistics.median(tuned):6.2f} s (target 15 s)")


if __name__ == "__main__":
    main()
