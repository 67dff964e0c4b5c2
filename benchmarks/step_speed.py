"""Optimizer step speed: descentlab's step against the fastest ``torch.optim`` mode, per layout.

For each optimizer and each parameter layout — (a) one tensor of 16 M elements, (b) 160 tensors of
100 K, (c) 2000 tensors of 1 K, (g) one tensor of 100 M, float32 — the script times one ``step()`` of
descentlab (``impl`` as given, default ``"fused"``) and of torch's for-loop, foreach and (where torch has
one) fused mode — or, for Lion and the schedule-free pair, lion-pytorch's ``Lion`` and the ``schedulefree`` package's
foreach and loop modes (test dependencies; a row whose package is missing is skipped, saying so) — alternating them
in one process, and prints medians, the ratio to torch's best mode and the
effective bandwidth (bytes/param × n ÷ time) as a fraction of a roof timed in the same alternation: an
in-place triad ``a += s·b`` (12 bytes/element) on CPU, a device-to-device copy (8 bytes/element) on CUDA
(``--roof`` chooses). A second table counts the ATen operations one step dispatches (1, 100 and 2 000 tensors):
descentlab's path, its multi-tensor path (``impl="foreach"``) and torch's three modes. A GPU section (layouts
``--gpu-layouts``, default a, b, g; descentlab's ``auto`` and ``foreach`` paths) runs when CUDA is present.

Adafactor and Muon rows use matrices of each layout's size (near-square, e.g. 4000 × 4000 for layout a: Adafactor
factors them, Muon needs them). A rule with no C kernel (adafactor, muon) is timed with ``impl="auto"`` when
``--impl fused`` is asked (what a user gets: the multi-tensor path), and the table's header line says so. Muon's
Newton–Schulz iteration is compute-bound: its GB/s and roof columns mean little, and a step takes seconds
(run it with few ``--repeats``).
Run::

    .venv/bin/python benchmarks/step_speed.py [--repeats 15] [--layouts a,b,c,g] [--optimizers rmsprop,adam]
                                              [--gather native|python|auto]
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import time
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import descentlab
from descentlab.fused import cpu_build, cpu_step
from descentlab.fused.abi import kernel_call

LAYOUTS = {"a": (1, 16_000_000), "b": (160, 100_000), "c": (2000, 1_000), "g": (1, 100_000_000)}
# The roof each layout's bandwidth is compared with: an in-place triad a += s·b (12 B/element) or a copy
# b ← a (8 B/element, the GPU target's device-to-device copy).
ROOF_BYTES = {"triad": 12, "copy": 8}
# name: (descentlab class, descentlab kwargs, torch class, torch kwargs, fp32 bytes/param, torch has fused)
CASES: dict[str, tuple[Any, dict, Any, dict, int, bool]] = {
    "sgd": (descentlab.SGD, dict(lr=0.01), torch.optim.SGD, dict(lr=0.01), 12, True),
    "momentum": (descentlab.SGD, dict(lr=0.01, momentum=0.9), torch.optim.SGD, dict(lr=0.01, momentum=0.9), 20, True),
    "nesterov": (descentlab.SGD, dict(lr=0.01, momentum=0.9, nesterov=True), torch.optim.SGD,
                 dict(lr=0.01, momentum=0.9, nesterov=True), 20, True),
    "adagrad": (descentlab.Adagrad, {}, torch.optim.Adagrad, {}, 20, True),
    "adadelta": (descentlab.Adadelta, {}, torch.optim.Adadelta, {}, 28, False),
    "rmsprop": (descentlab.RMSprop, {}, torch.optim.RMSprop, {}, 20, False),
    "rmsprop-inside": (descentlab.RMSprop, dict(eps_placement="inside", alpha=0.9), torch.optim.RMSprop,
                       dict(alpha=0.9), 20, False),
    "rmsprop-centered": (descentlab.RMSprop, dict(centered=True, momentum=0.9), torch.optim.RMSprop,
                         dict(centered=True, momentum=0.9), 36, False),
    "momentum-ema": (descentlab.Momentum, dict(lr=0.1, beta=0.9), torch.optim.SGD, dict(lr=0.01, momentum=0.9), 20,
                     True),  # the lecture form; torch's equivalent is SGD with lr·(1 − β)
    "adam": (descentlab.Adam, {}, torch.optim.Adam, {}, 28, True),
    "adam-inside": (descentlab.Adam, dict(eps_placement="inside"), torch.optim.Adam, {}, 28, True),
    "adamw": (descentlab.AdamW, {}, torch.optim.AdamW, {}, 28, True),
    "nadam": (descentlab.NAdam, {}, torch.optim.NAdam, {}, 28, False),
    "adamax": (descentlab.Adamax, {}, torch.optim.Adamax, {}, 28, False),
    "radam": (descentlab.RAdam, {}, torch.optim.RAdam, {}, 28, False),
    "rprop": (descentlab.Rprop, {}, torch.optim.Rprop, {}, 28, False),
    "asgd": (descentlab.ASGD, {}, torch.optim.ASGD, {}, 20, False),
    # against lion-pytorch / schedulefree (COMPETITORS); schedule-free's defaults are the packages'
    "lion": (descentlab.Lion, dict(lr=1e-4, weight_decay=0.01), "lion_pytorch.Lion", dict(lr=1e-4, weight_decay=0.01),
             20, False),
    "schedulefree-adamw": (descentlab.ScheduleFreeAdamW, {}, "schedulefree.AdamWScheduleFree", {}, 28, False),
    "schedulefree-sgd": (descentlab.ScheduleFreeSGD, dict(lr=0.1), "schedulefree.SGDScheduleFree", dict(lr=0.1), 20,
                         False),
    # matrices (MATRIX_CASES); torch's Adafactor has foreach and for-loop modes, its Muon one (no foreach flag)
    "adafactor": (descentlab.Adafactor, {}, torch.optim.Adafactor, {}, 12, False),
    "muon": (descentlab.Muon, {}, torch.optim.Muon, {}, 20, False),
}
#: Competitors that are not a torch.optim class with foreach / fused flags: the row's class is named "module.Class"
#: and timed in these modes (the keyword arguments of each; an empty dict: the class's one mode).
COMPETITORS = {"lion_pytorch.Lion": {"lion-pytorch": {}},
               "schedulefree.AdamWScheduleFree": {"schedulefree foreach": dict(foreach=True),
                                                  "schedulefree loop": dict(foreach=False)},
               "schedulefree.SGDScheduleFree": {"schedulefree foreach": dict(foreach=True),
                                                "schedulefree loop": dict(foreach=False)}}
#: Rows stepped on matrices (a near-square shape of the layout's tensor size), and torch modes a class lacks.
MATRIX_CASES = {"adafactor", "muon"}
TORCH_ONE_MODE = {torch.optim.Muon}
#: Tensor counts of the dispatched-operations table (1 000 elements each).
OP_COUNTS = (1, 100, 2000)


def _shape(name: str, size: int) -> tuple[int, ...]:
    """The tensor shape of ``name``'s rows: ``(size,)``, or a near-square matrix of ``size`` elements."""
    if name not in MATRIX_CASES:
        return (size,)
    rows = max(d for d in range(1, math.isqrt(size) + 1) if size % d == 0)
    return (rows, size // rows)


def _params(count: int, size: int, device: str, shape: tuple[int, ...] | None = None) -> list[torch.nn.Parameter]:
    params = [torch.nn.Parameter(torch.randn(shape or (size,), device=device)) for _ in range(count)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def _timer(step: Callable[[], Any], device: str) -> Callable[[], float]:
    def timed() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start
    return timed


def competitor_class(name: str) -> Any:
    """The class descentlab's row is timed against; ``None`` when its package is not installed."""
    cls = CASES[name][2]
    if isinstance(cls, str):
        module, _, attr = cls.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError:
            return None
    return cls


def competitor_modes(name: str) -> dict[str, Callable[[list[torch.nn.Parameter]], Any]]:
    """``{mode label: build(params)}`` of the row's competitor: torch's for-loop / foreach / fused, or the package's
    modes (schedule-free ones are switched to train mode, as the package requires before a step)."""
    _, _, spec, t_kw, _, has_fused = CASES[name]
    cls = competitor_class(name)
    if isinstance(spec, str):
        def build(extra: dict[str, Any]) -> Callable[[list[torch.nn.Parameter]], Any]:
            def make(params: list[torch.nn.Parameter]) -> Any:
                opt = cls(params, **t_kw, **extra)
                if hasattr(opt, "train"):
                    opt.train()
                return opt
            return make
        return {mode: build(extra) for mode, extra in COMPETITORS[spec].items()}
    if cls in TORCH_ONE_MODE:
        return {"torch": lambda ps: cls(ps, **t_kw)}
    modes = {"torch for-loop": lambda ps: cls(ps, foreach=False, **t_kw),
             "torch foreach": lambda ps: cls(ps, foreach=True, **t_kw)}
    if has_fused:
        modes["torch fused"] = lambda ps: cls(ps, fused=True, **t_kw)
    return modes


def descentlab_impl(name: str, impl: str) -> str:
    """The ``impl`` descentlab's row runs: as asked, but ``"auto"`` for ``"fused"`` where the rule has no C kernel
    (there ``"fused"`` would be the reference loop; ``"auto"`` is the multi-tensor path a user gets)."""
    if impl != "fused":
        return impl
    dl_cls, dl_kw = CASES[name][:2]
    probe = dl_cls([torch.nn.Parameter(torch.zeros(_shape(name, 4)))], **dl_kw)
    return impl if kernel_call(probe.plan(probe.param_groups[0]), "fused") is not None else "auto"


def _mode_label(mode: str) -> str:
    """The table's "(mode)": torch's mode without "torch ", a package's name as it is."""
    return mode[6:] if mode.startswith("torch ") else mode


def bench_case(name: str, layout: str, impl: str, repeats: int, device: str, roof: str = "triad") -> dict[str, Any]:
    """Median step seconds of descentlab, of torch's best mode and of the roof, timed alternately in a rotating
    order. Torch's best mode is chosen on the even rounds and timed on the odd ones (so are the others): the
    smallest of three medians of one and the same ``add_`` (SGD's three torch modes) is biased low by a few %,
    a selection effect, not a speed."""
    dl_cls, dl_kw = CASES[name][:2]
    count, size = LAYOUTS[layout]
    shape = _shape(name, size)
    modes = {"descentlab": dl_cls(_params(count, size, device, shape), impl=descentlab_impl(name, impl), **dl_kw)}
    for mode, make in competitor_modes(name).items():
        modes[mode] = make(_params(count, size, device, shape))
    timers = {mode: _timer(opt.step, device) for mode, opt in modes.items()}
    a, b = torch.randn(count * size, device=device), torch.randn(count * size, device=device)
    roofs = {"triad": lambda: a.add_(b, alpha=0.5), "copy": lambda: b.copy_(a)}
    timers["roof"] = _timer(roofs[roof], device)  # timed in the same alternation
    first = {mode: timed() for mode, timed in timers.items()}  # state init
    first_fast = timers["descentlab"]()  # the first step that may compile
    for timed in timers.values():
        timed()
    samples: dict[str, list[float]] = {mode: [] for mode in timers}
    # The order rotates every round, so each mode runs first, second, … equally often: with a fixed order the mode
    # timed first (right after the roof) read ≈ 3 % slower than the same step timed last (measured on layout a).
    order = list(timers)
    for round_ in range(repeats):
        shift = round_ % len(order)
        for mode in order[shift:] + order[:shift]:
            samples[mode].append(timers[mode]())
    torch_modes = [mode for mode in samples if mode not in ("descentlab", "roof")]
    best = min(torch_modes, key=lambda mode: statistics.median(samples[mode][0::2]))
    timed = {mode: statistics.median(samples[mode][1::2] or samples[mode]) for mode in samples}
    del first
    return {"descentlab": timed["descentlab"], "best": best, "torch": timed[best], "roof": timed["roof"],
            "first fused step": first_fast}


class _CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched while active (on a GPU, each is at least one kernel launch)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def dispatched_per_step(make: Callable[[list[torch.nn.Parameter]], Any], tensors: int, device: str,
                        shape: tuple[int, ...] | None = None) -> int:
    """ATen operations of one step (after two warm-up steps, so the state exists) over ``tensors`` tensors."""
    params = _params(tensors, 1000, device, shape)
    opt = make(params)
    opt.step()
    opt.step()
    with _CountOps() as counter:
        opt.step()
    return counter.count


def run_ops(args: argparse.Namespace, names: list[str]) -> None:
    """The dispatched-operations table: descentlab's path and its foreach path beside torch's modes."""
    device = args.device
    print(f"\ndispatched operations per step ({device}; tensors of 1,000 elements; descentlab impl={args.impl})")
    print("(lion, schedule-free: the package's loop / one mode and foreach mode in torch's for-loop and foreach columns; "
          "adafactor on 25×40 matrices; muon left out)")
    print("| optimizer | tensors | descentlab | descentlab foreach | torch for-loop | torch foreach | torch fused |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        dl_cls, dl_kw = CASES[name][:2]
        if competitor_class(name) is None or name == "muon":
            continue  # not installed; Muon: a handful of matmuls a tensor, not a dispatch-bound step
        impl = descentlab_impl(name, args.impl)
        shape = _shape(name, 1000)
        modes = competitor_modes(name)
        # columns: torch's for-loop, foreach, fused; a package's loop / foreach / its one mode
        loop = next((m for m in modes if m.endswith(("for-loop", "loop")) or len(modes) == 1), None)
        each = next((m for m in modes if m.endswith("foreach")), None)
        fused_mode = next((m for m in modes if m.endswith("fused")), None)
        for tensors in OP_COUNTS:
            row = [dispatched_per_step(lambda ps: dl_cls(ps, impl=impl, **dl_kw), tensors, device, shape),
                   dispatched_per_step(lambda ps: dl_cls(ps, impl="foreach", **dl_kw), tensors, device, shape)]
            row += [dispatched_per_step(modes[m], tensors, device, shape) if m else "—" for m in (loop, each, fused_mode)]
            print(f"| {name} | {tensors:,} | " + " | ".join(str(x) for x in row) + " |", flush=True)


def run(args: argparse.Namespace) -> None:
    device = args.device
    layouts = args.layouts.split(",")
    names = args.optimizers.split(",") if args.optimizers else list(CASES)
    for bad in [x for x in layouts if x not in LAYOUTS] + [x for x in names if x not in CASES]:
        raise SystemExit(f"unknown layout/optimizer {bad!r}; layouts {list(LAYOUTS)}, optimizers {list(CASES)}")
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, impl={args.impl}, "
          f"gather={args.gather}, repeats {args.repeats}")
    missing = [name for name in names if competitor_class(name) is None]
    if missing:
        print(f"skipped (competitor not installed: pip install -e '.[test]'): {', '.join(missing)}")
    names = [name for name in names if name not in missing]
    other = [name for name in names if descentlab_impl(name, args.impl) != args.impl]
    if other:
        print(f"impl=auto for rows without a C kernel: {', '.join(other)}")
    roof = args.roof or ("copy" if device == "cuda" else "triad")
    print(f"| layout | optimizer | descentlab ms | best torch ms (mode) | speed-up | dl GB/s | {roof} GB/s | dl/{roof} "
          "| first fused step s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layout in layouts:
        count, size = LAYOUTS[layout]
        n = count * size
        for name in names:
            res = bench_case(name, layout, args.impl, args.repeats, device, roof)
            best, best_time = res["best"], res["torch"]
            dl = res["descentlab"]
            gbs = CASES[name][4] * n / dl / 1e9
            roof_gbs = ROOF_BYTES[roof] * n / res["roof"] / 1e9
            print(f"| {layout} ({count}×{size:,}) | {name} | {dl * 1e3:.2f} | {best_time * 1e3:.2f} "
                  f"({_mode_label(best)}) | {best_time / dl:.2f}× | {gbs:.1f} | {roof_gbs:.1f} | "
                  f"{gbs / roof_gbs:.0%} | {res['first fused step']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--layouts", default="a,b,c")
    parser.add_argument("--optimizers", default="")
    parser.add_argument("--impl", default="fused", choices=["auto", "reference", "fused", "foreach"])
    parser.add_argument("--no-ops", action="store_true", help="skip the dispatched-operations table")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--roof", default=None, choices=list(ROOF_BYTES),
                        help="the bandwidth roof: triad (CPU default) or copy (CUDA default: the device-to-device "
                             "copy the GPU targets are stated against)")
    parser.add_argument("--gpu-layouts", default="a,b,g",
                        help="layouts of the GPU section (g: one tensor of 100 M, the GPU target's size)")
    parser.add_argument("--gather", default="native", choices=list(cpu_step.GATHER_MODES),
                        help="who picks the tensors for the C kernels: the C++ gatherer (built before timing), "
                             "the Python loop, or auto (the library's default)")
    args = parser.parse_args()
    if args.repeats < 2:
        raise SystemExit(f"--repeats must be >= 2 (torch's best mode is chosen on half the rounds), got {args.repeats}")
    cpu_step.GATHER = args.gather
    if args.gather == "native" and cpu_build.gather_module(wait=True) is None:
        raise SystemExit(f"the native gatherer is unavailable: {cpu_build.gather_unavailable_reason()}; "
                         "use --gather python")
    run(args)
    if not args.no_ops:
        run_ops(args, args.optimizers.split(",") if args.optimizers else list(CASES))
    if args.device == "cpu" and torch.cuda.is_available():
        print("\nGPU section (CUDA present):")
        args.device, args.layouts, args.roof = "cuda", args.gpu_layouts, None
        for impl in ("auto", "foreach"):
            args.impl = impl
            run(args)
        run_ops(args, args.optimizers.split(",") if args.optimizers else list(CASES))
    elif not torch.cuda.is_available():
        print("\nno CUDA device: GPU section skipped")


if __name__ == "__main__":
    main()
