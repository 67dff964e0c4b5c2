"""Hostile state_dicts and moved parameters (RuleOptimizer.load_state_dict / _follow_param in optim/base.py)."""
from __future__ import annotations

import warnings

import pytest
import torch

from descentlab import SGD, Adam, Momentum, RMSprop
from descentlab.optim.base import STATE_FORMAT


def _trained(cls, **opts):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = cls([p], lr=0.1, **opts)
    p.grad = torch.randn(3, 2)
    opt.step()
    return p, opt


def test_state_dict_carries_format_marker_and_round_trips():
    p, opt = _trained(Adam)
    sd = opt.state_dict()
    assert sd["descentlab_format"] == STATE_FORMAT
    q = torch.nn.Parameter(p.detach().clone())
    fresh = Adam([q], lr=0.1)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.state[q]["exp_avg"], opt.state[p]["exp_avg"])


def test_torch_optim_state_dict_without_marker_loads():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4))
    ref = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.randn(4)
    ref.step()
    q = torch.nn.Parameter(p.detach().clone())
    ours = Adam([q], lr=0.1)
    ours.load_state_dict(ref.state_dict())
    assert torch.equal(ours.state[q]["exp_avg_sq"], ref.state[p]["exp_avg_sq"])


def test_future_format_is_refused():
    _, opt = _trained(Adam)
    sd = opt.state_dict()
    sd["descentlab_format"] = STATE_FORMAT + 1
    with pytest.raises(ValueError, match="descentlab_format"):
        opt.load_state_dict(sd)


def test_state_from_another_optimizer_is_refused():
    _, adam = _trained(Adam)
    p2, momentum = _trained(Momentum)
    with pytest.raises(ValueError, match="another optimizer"):
        momentum.load_state_dict(adam.state_dict())


def test_wrong_shape_is_refused():
    _, opt = _trained(RMSprop)
    sd = opt.state_dict()
    sd["state"][0]["square_avg"] = torch.zeros(5)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(sd)


def test_wrong_group_and_param_counts_are_refused():
    _, opt = _trained(SGD)
    sd = opt.state_dict()
    other = SGD([torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(sd)
    two_groups = SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]},
                      {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1)
    with pytest.raises(ValueError, match="param groups"):
        two_groups.load_state_dict(sd)


def test_not_a_state_dict_is_refused():
    _, opt = _trained(SGD)
    with pytest.raises(ValueError, match="not an optimizer state_dict"):
        opt.load_state_dict({"weights": 1})


def test_param_cast_after_build_moves_state_with_one_warning():
    p, opt = _trained(Adam)
    p.data = p.data.double()
    p.grad = torch.randn(3, 2, dtype=torch.float64)
    with pytest.warns(UserWarning, match="moved"):
        opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.float64
    assert torch.isfinite(p).all()
    p.grad = torch.randn(3, 2, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
