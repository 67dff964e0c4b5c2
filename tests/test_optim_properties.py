"""Hypothesis: valid hyperparameters × shapes never crash and give finite results from finite inputs;
invalid ones raise ValueError naming the argument."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descentlab.optim.registry import REGISTRY
from optimizer_cases import case, skip_unmet

NAMES = list(REGISTRY)
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)  # includes 0-d and empty tensors

# Valid hyperparameters per row (beyond lr / weight_decay, which every row takes): Case.valid in
# tests/optimizer_cases.py, with Case.fix_valid for the draws that would be degenerate.


@st.composite
def valid_case(draw, name):
    opts = {key: draw(strategy) for key, strategy in case(name).valid.items()}
    opts["lr"] = draw(st.floats(0.0, 1.0))
    opts["weight_decay"] = draw(st.floats(0.0, 0.1))
    if case(name).fix_valid is not None:
        case(name).fix_valid(opts)
    if opts.get("eps", 1) == 0 and opts.get("eps_placement") == "outside":
        opts["eps"] = 1e-8
    shape = draw(shapes)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**16))
    return opts, shape, dtype, seed


@pytest.mark.parametrize("name", NAMES)
def test_valid_hyperparameters_give_finite_results(name):
    skip_unmet(name)  # any shape, dense gradients, no closure

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(valid_case(name))
    def check(drawn):
        opts, shape, dtype, seed = drawn
        gen = torch.Generator().manual_seed(seed)
        p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
        opt = REGISTRY[name].cls([p], **opts)
        for _ in range(5):
            p.grad = torch.randn(shape, generator=gen, dtype=dtype) + 0.1
            opt.step()
        assert p.shape == shape and p.dtype == dtype
        assert torch.isfinite(p).all(), (name, opts)
        for key, value in opt.state[p].items():
            if torch.is_tensor(value):
                assert torch.isfinite(value).all(), (name, opts, key)

    check()


OUT_OF_RANGE = {
    "lr": st.one_of(st.floats(max_value=-1e-12), st.just(math.nan)),
    "weight_decay": st.floats(max_value=-1e-12),
}


@pytest.mark.parametrize("name", NAMES)
def test_invalid_hyperparameters_raise_value_error_naming_them(name):
    @settings(max_examples=30, deadline=None)
    @given(st.sampled_from(sorted(OUT_OF_RANGE) + ["beta"]), st.data())
    def check(key, data):
        if key == "beta":
            key = case(name).beta_like
            if key is None:
                return
            bad = data.draw(st.one_of(st.floats(min_value=1.0, max_value=1e6), st.floats(max_value=-1e-9)))
            value = (bad, 0.9) if key == "betas" else bad
        else:
            value = data.draw(OUT_OF_RANGE[key])
        if key not in inspect.signature(REGISTRY[name].cls).parameters:
            return  # not an option of this row (SparseAdam and LBFGS have no weight_decay, as torch's)
        with pytest.raises(ValueError) as info:  # checked before the parameters (Muon's 2-D-only check)
            REGISTRY[name].build([torch.nn.Parameter(torch.ones(2))], **{key: value})
        assert key in str(info.value)

    check()
