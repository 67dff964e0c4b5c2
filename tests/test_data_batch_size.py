"""Batch-size advice: the notes' rule, measured, never over the memory budget."""

from __future__ import annotations

import pytest
import torch

from descentlab.data import suggest_batch_size


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


def test_small_sets_use_batch_gradient_descent():
    x, y = torch.randn(500, 64), torch.randint(0, 10, (500,))
    advice = suggest_batch_size(_model(), x, y, torch.nn.functional.cross_entropy)
    assert advice.batch_size == "full"
    assert "500 samples" in advice.reason and advice.reason.count(". ") == 0  # one sentence


def test_large_sets_get_a_measured_power_of_two_within_budget():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    advice = suggest_batch_size(_model(), x, y, torch.nn.functional.cross_entropy, n_samples=60000,
                                candidates=(32, 64, 128, 256, 512), repeats=2)
    assert advice.batch_size in (32, 64, 128, 256, 512)
    chosen = next(m for m in advice.measurements if m["batch_size"] == advice.batch_size)
    assert chosen["fits"]
    bytes_ = [m["bytes"] for m in advice.measurements]
    assert bytes_ == sorted(bytes_)  # memory grows with the batch: it is measured, not assumed
    assert str(advice.batch_size) in advice.reason


def test_never_returns_a_size_over_the_budget():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    probe = suggest_batch_size(_model(), x, y, torch.nn.functional.cross_entropy, n_samples=60000,
                               candidates=(32, 512), repeats=1)
    small, large = (m["bytes"] for m in probe.measurements)
    budget = (small + large) // 2
    advice = suggest_batch_size(_model(), x, y, torch.nn.functional.cross_entropy, n_samples=60000,
                                candidates=(32, 512), memory_budget=budget, repeats=1)
    assert advice.batch_size == 32
    with pytest.raises(ValueError, match="no candidate batch size fits"):
        suggest_batch_size(_model(), x, y, torch.nn.functional.cross_entropy, n_samples=60000,
                           candidates=(32, 512), memory_budget=small // 2, repeats=1)
