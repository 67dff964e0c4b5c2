"""Every registry optimizer, in every variant and lecture convention, against the naive float64
references of ``reference_rules.py`` — parameters and state compared after every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab.optim.registry import REGISTRY
from helpers import REFERENCE_TOL
from optimizer_cases import CASES as OPTIMIZER_CASES
from optimizer_cases import case

# Lecture conventions on top of each row's own variants: Case.conventions in tests/optimizer_cases.py (a row
# without a Case still collects here; its runs fail in _run, naming the file to edit).
CASES = [
    (name, vname, opts)
    for name, spec in REGISTRY.items()
    for vname, opts in {**spec.variants,
                        **(OPTIMIZER_CASES[name].conventions if name in OPTIMIZER_CASES else {})}.items()
]
SHAPES = [(), (7,), (3, 4, 5)]
#: Shapes for the rows that need them (registry.REQUIREMENTS): matrices (tall, wide, square), sparse rows.
MATRIX_SHAPES = [(7, 3), (2, 5), (4, 4)]
SPARSE_SHAPES = [(7,), (6, 3)]
CLOSURE_SHAPES = [(7,), (2, 3)]
# Tolerances: helpers.REFERENCE_TOL.


def _run(name: str, opts: dict, shape: tuple, dtype: torch.dtype, steps: int) -> None:
    if name == "nadam" and dtype == torch.float64 and torch.get_default_dtype() != torch.float64:
        # NAdam's 0-d state mu_product lives in PyTorch's scalar dtype: float32, unless the default dtype is
        # float64. Under a float64 default the whole rule is float64 and must match the reference to rounding.
        torch.set_default_dtype(torch.float64)
        try:
            return _run(name, opts, shape, dtype, steps)
        finally:
            torch.set_default_dtype(torch.float32)
    spec = REGISTRY[name]
    if "closure" in spec.requires:
        return _run_closure(name, opts, shape, dtype, steps)
    kwargs = {**spec.defaults, **opts, **case(name).reference_options}
    floor = case(name).reference_min_lr
    if floor is not None and kwargs["lr"] < floor:
        kwargs["lr"] = floor  # larger steps make every term of the rule visible in the comparison
    rng = np.random.default_rng(abs(hash((name, str(opts), shape))) % 2**32)
    w_ref = rng.normal(size=shape)
    param = torch.nn.Parameter(torch.tensor(w_ref, dtype=dtype))
    opt = spec.cls([param], **kwargs)
    state_ref: dict = {}
    for t in range(1, steps + 1):
        g = 0.3 * w_ref + rng.normal(size=shape)  # depends on w, like a real loss gradient
        param.grad = torch.tensor(g, dtype=dtype)
        if "sparse" in spec.requires:  # the gradient holds about half the coordinates; NaN marks the others
            hit = rng.random(size=shape) < 0.5
            param.grad = param.grad.to_sparse().sparse_mask(torch.tensor(hit).to_sparse())
            g = np.where(hit, g, np.nan)
        opt.step()
        w_ref = case(name).reference(w_ref, g, state_ref, t, **kwargs)
        tol = REFERENCE_TOL[dtype]
        np.testing.assert_allclose(param.detach().double().numpy(), w_ref, **tol,
                                   err_msg=f"{name} {opts} parameters differ at step {t}")
        state = opt.state[param]
        for key, expected in state_ref.items():
            assert key in state, f"{name} {opts}: state has no {key!r}"
            got = state[key]
            got = got.double().numpy() if torch.is_tensor(got) else np.asarray(got, dtype=np.float64)
            np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), **tol,
                                       err_msg=f"{name} {opts}: state {key!r} differs at step {t}")


def _run_closure(name: str, opts: dict, shape: tuple, dtype: torch.dtype, steps: int) -> None:
    """A closure row (LBFGS) and its naive reference minimise the same smooth function, ``steps`` calls each."""
    if opts.get("line_search_fn") is not None:
        pytest.skip(f"{name} {opts}: the naive reference has no line search; the strong-Wolfe search is checked "
                    "against torch.optim bit for bit (test_optim_parity.py)")
    spec = REGISTRY[name]
    kwargs = {**spec.defaults, **opts, **case(name).reference_options}
    rng = np.random.default_rng(abs(hash((name, str(opts), shape))) % 2**32)
    centre, x_ref = rng.normal(size=shape), rng.normal(size=shape)  # the reference steps their flat vectors

    def f_and_grad(x):  # Σ (x − c)² + ½ Σ (x − c)⁴
        d = x - centre
        return float(np.sum(d**2) + 0.5 * np.sum(d**4)), 2 * d + 2 * d**3

    param = torch.nn.Parameter(torch.tensor(x_ref, dtype=dtype))
    opt = spec.cls([param], **kwargs)
    c = torch.tensor(centre, dtype=dtype)

    def closure():
        opt.zero_grad()
        loss = ((param - c) ** 2).sum() + 0.5 * ((param - c) ** 4).sum()
        loss.backward()
        return loss

    state_ref: dict = {}
    for call in range(1, steps + 1):
        opt.step(closure)
        x_ref = case(name).reference(x_ref.ravel(), lambda x: _flat(f_and_grad(x.reshape(shape))), state_ref,
                                     **kwargs).reshape(shape)
        np.testing.assert_allclose(param.detach().double().numpy(), x_ref, **REFERENCE_TOL[dtype],
                                   err_msg=f"{name} {opts} parameters differ after {call} calls")


def _flat(loss_and_grad: tuple) -> tuple:
    return loss_and_grad[0], loss_and_grad[1].ravel()


def _shapes(name: str) -> list:
    requires = REGISTRY[name].requires
    if "closure" in requires:
        return CLOSURE_SHAPES
    return MATRIX_SHAPES if "matrices" in requires else SPARSE_SHAPES if "sparse" in requires else SHAPES


@pytest.mark.parametrize("name,vname,opts", CASES, ids=[f"{n}-{v}" for n, v, _ in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_matches_reference_for_30_steps(name, vname, opts, dtype):
    for shape in _shapes(name):
        _run(name, opts, shape, dtype, steps=30)


@pytest.mark.parametrize("name,vname,opts", CASES, ids=[f"{n}-{v}" for n, v, _ in CASES])
def test_matches_reference_after_one_step(name, vname, opts):
    _run(name, opts, _shapes(name)[0] if REGISTRY[name].requires else (7,), torch.float64, steps=1)
