"""Hostile inputs to the optimizers: each gets a clear error or a documented safe behaviour."""
from __future__ import annotations

import pytest
import torch

from descentlab import SGD, Adam
from descentlab.optim.registry import REGISTRY, create_optimizer, get_spec


def _param(value=1.0):
    return torch.nn.Parameter(torch.full((2,), value))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_nonfinite_skip_leaves_params_and_counts(name):
    p = _param()
    opt = create_optimizer(name, [p], nonfinite="skip")
    p.grad = torch.tensor([float("nan"), 1.0])
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2))
    assert opt.skipped_steps == 1


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_nonfinite_raise(name):
    p = _param()
    opt = create_optimizer(name, [p], nonfinite="raise")
    p.grad = torch.tensor([float("inf"), 1.0])
    with pytest.raises(FloatingPointError):
        opt.step()


def test_nonfinite_policy_name_is_checked():
    with pytest.raises(ValueError, match="nonfinite"):
        SGD([_param()], lr=0.1, nonfinite="explode")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_negative_lr_names_the_argument(name):
    with pytest.raises(ValueError, match="lr"):
        create_optimizer(name, [_param()], lr=-1.0)


def test_tensor_lr_is_read_each_step():
    p = _param()
    lr = torch.tensor(0.5)
    opt = SGD([p], lr=lr)
    p.grad = torch.ones(2)
    opt.step()
    lr.fill_(0.25)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((2,), 1.0 - 0.5 - 0.25))


def test_parameter_in_two_groups_is_refused():
    p = _param()
    with pytest.raises(ValueError):
        Adam([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_empty_param_list_is_refused():
    with pytest.raises(ValueError):
        Adam([], lr=0.1)


def test_sparse_gradient_is_refused():
    emb = torch.nn.Embedding(4, 2, sparse=True)
    opt = Adam(emb.parameters(), lr=0.1)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_complex_parameter_matches_torch():
    z = torch.nn.Parameter(torch.tensor([1 + 2j, -1j]))
    zr = torch.nn.Parameter(z.detach().clone())
    ours, ref = Adam([z], lr=0.1), torch.optim.Adam([zr], lr=0.1)
    for g in (torch.tensor([0.5 - 1j, 2 + 0j]), torch.tensor([-1 + 1j, 0.3j])):
        z.grad, zr.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(z.detach(), zr.detach())


def test_unknown_optimizer_name_lists_valid_names():
    with pytest.raises(ValueError, match="adam"):
        get_spec("adamm")
