"""Helpers shared by the test files: tolerance tables, compiler skip markers, twin builders, fused counts.

Per-optimizer facts (budgets, strategies, conventions) live in ``optimizer_cases.py``, not here.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

import pytest
import torch

from descentlab.optim.registry import get_spec

# ---- tolerance tables ------------------------------------------------------------------------------------------

#: A descentlab optimizer against the naive float64 rules of reference_rules.py: float64 agrees to rounding,
#: float32 to rounding accumulated over the steps (test_rules_reference.py).
REFERENCE_TOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=3e-4, atol=3e-5)}

#: The CPU fused path (C kernels) against impl="reference": torch.testing's float32 defaults, which torch's own
#: fused-vs-for-loop optimizer tests use (1 ulp of a momentum buffer of size ~30 is 2e-6, and a sum that cancels
#: keeps that absolute error); 1e-13 for float64.
FUSED_TOL = {torch.float32: dict(rtol=1.3e-6, atol=1e-5), torch.float64: dict(rtol=1e-13, atol=1e-13)}

#: torch.testing's default tolerances per dtype (for comparisons over mixed dtypes, as in the fuzz test).
TESTING_DEFAULT_TOL = {torch.float32: dict(rtol=1.3e-6, atol=1e-5), torch.float64: dict(rtol=1e-7, atol=1e-7),
                       torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5), torch.float16: dict(rtol=1e-3, atol=1e-5)}

#: The fused path against torch.optim (one expression per element, no FMA, versus torch's chains of in-place
#: ops), after 12 steps (test_optim_parity.py).
TORCH_FUSED_TOL = {torch.float32: dict(rtol=2e-6, atol=2e-6), torch.float64: dict(rtol=1e-13, atol=1e-13)}

#: The torch.compile kernels against impl="reference" (test_fused_kernels.py).
COMPILED_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}

# ---- compiler skip markers -------------------------------------------------------------------------------------

#: A C compiler for the CPU fused kernels (descentlab/fused/cpu_build.py).
HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc"))
#: A C++ compiler for the native gatherer.
HAVE_CXX = bool(os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++"))
NO_CXX_REASON = "no C++ compiler: the native gatherer cannot be built here"

needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler: the C kernels cannot be built here")
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason=NO_CXX_REASON)

# ---- twins -----------------------------------------------------------------------------------------------------


def random_params(shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, gen: torch.Generator) -> list:
    """Parameters of ``shapes`` drawn from ``gen``."""
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def clones(params: Sequence[torch.Tensor]) -> list:
    """Fresh parameters with the same values."""
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def impl_twins(cls, opts: dict[str, Any], dtype: torch.dtype, shapes: Sequence[tuple[int, ...]], seed: int = 0,
               impls: tuple[str, str] = ("fused", "reference"), **extra: Any):
    """Two optimizers of ``cls`` over equal random parameters, one per ``impls`` entry.

    Returns ``(params_a, params_b, opt_a, opt_b, gen)``; ``gen`` continues the parameters' generator for the
    gradients (see :func:`same_grads`). ``extra`` goes to both constructors (``state_dtype=…``).
    """
    gen = torch.Generator().manual_seed(seed)
    a = random_params(shapes, dtype, gen)
    b = clones(a)
    return a, b, cls(a, impl=impls[0], **opts, **extra), cls(b, impl=impls[1], **opts, **extra), gen


def same_grads(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], gen: torch.Generator, pull: float = 0.0) -> None:
    """Give both parameter lists the same random gradient (plus ``pull`` × the parameter, like a real loss)."""
    for p, q in zip(a, b):
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        if pull:
            g = g + pull * p.detach()
        p.grad, q.grad = g, g.clone()


def assert_twins_close(a, b, opt_a, opt_b, tol: dict, where: str = "") -> None:
    """Parameters and every state entry of twin optimizers agree within ``tol`` (same state keys)."""
    for i, (p, q) in enumerate(zip(a, b)):
        torch.testing.assert_close(p, q, **tol, msg=lambda m: f"{where}, param {i}: {m}")
        assert set(opt_a.state[p]) == set(opt_b.state[q]), (where, i, sorted(opt_a.state[p]), sorted(opt_b.state[q]))
        for key, value in opt_b.state[q].items():
            torch.testing.assert_close(torch.as_tensor(opt_a.state[p][key]), torch.as_tensor(value), **tol,
                                       msg=lambda m: f"{where}, param {i}, state {key!r}: {m}")


def torch_twin(name: str, params, **options: Any) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer that registry row ``name`` equals (its ``torch_equivalent``), built over
    ``params`` with the row's defaults overridden by ``options``, renamed by the row's mapping."""
    spec = get_spec(name)
    if spec.torch_equivalent is None:
        raise ValueError(f"registry row {name!r} has no torch equivalent")
    cls, mapping = spec.torch_equivalent
    kwargs = {}
    for key, value in {**spec.defaults, **options}.items():
        target = mapping.get(key, key)
        kwargs[target if isinstance(target, str) else key] = value
    kwargs.update({key: value for key, value in mapping.items() if not isinstance(value, str)})
    return cls(params, **kwargs)


def torch_twins(name: str, init: Sequence[torch.Tensor], **options: Any):
    """Registry row ``name`` and its torch twin over two copies of ``init``: ``(ours_params, torch_params, ours,
    theirs)``."""
    a, b = clones(init), clones(init)
    return a, b, get_spec(name).build(a, **options), torch_twin(name, b, **options)


# ---- the CPU fused path ----------------------------------------------------------------------------------------


def fused_count(opt) -> int:
    """How many parameters the C kernels stepped in ``opt``'s latest step."""
    from descentlab.fused import cpu_step

    return cpu_step.fused_tensor_count(opt)


# ---- dispatched operations ---------------------------------------------------------------------------------------

def dispatched_per_step(make, tensors: int, size: int = 1000) -> int:
    """ATen operations one ``step()`` dispatches (on a GPU each is a kernel launch), for ``make(params)`` over
    ``tensors`` tensors of ``size`` elements, after two steps (so the state exists)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(size)) for _ in range(tensors)]
    opt = make(params)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn(size)
        opt.step()
    with Count() as counter:
        opt.step()
    return counter.count
