"""Offline datasets: seeded splits, standardisation, known optima, names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab import datasets


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes", "iris", "wine", "linear", "quadratic_deep"])
def test_splits_are_seeded_disjoint_and_standardised(name):
    a, b, c = datasets.load(name, seed=0), datasets.load(name, seed=0), datasets.load(name, seed=1)
    assert torch.equal(a.train[0], b.train[0])
    n = len(a.full[0])
    if name == "quadratic_deep":  # DeepOBS draws its test set separately; val is a fifth of the training draws
        assert len(a.train[0]) + len(a.val[0]) == n
    else:
        assert len(a.train[0]) + len(a.val[0]) + len(a.test[0]) == n
    if name != "quadratic_deep":
        assert not torch.equal(a.train[0], c.train[0])
    if name in ("digits", "diabetes", "wine"):
        mean, std = a.train[0].mean(0), a.train[0].std(0, unbiased=False)
        assert mean.abs().max() < 1e-4
        assert ((std - 1).abs() < 1e-3)[std > 0].all()


def test_diabetes_least_squares_optimum_is_the_published_value():
    d = datasets.load("diabetes")
    x, y = d.full
    X = np.c_[x.numpy().astype(np.float64), np.ones(len(x))]
    w, *_ = np.linalg.lstsq(X, y.numpy()[:, 0].astype(np.float64), rcond=None)
    assert ((X @ w - y.numpy()[:, 0]) ** 2).mean() == pytest.approx(2859.70, abs=0.01)


def test_quadratic_deep_recipe():
    d = datasets.load("quadratic_deep")
    q = d.info["hessian"]
    eig = np.sort(np.linalg.eigvalsh(q))
    assert q.shape == (100, 100) and np.allclose(q, q.T)
    assert (eig[:90] > 0).all() and (eig[:90] < 1).all() and (eig[90:] > 30).all() and (eig[90:] < 60).all()
    assert d.full[0].shape == (1000, 100) and abs(float(d.full[0].std()) - 0.6) < 0.01
    # the published final test losses (87.0–87.5) sit just above the exact optimum of the test loss
    assert 86.5 < d.info["test_loss_star"] < 87.5


def test_mnist1d_is_generated_offline():
    d = datasets.load("mnist1d")
    assert d.n_features == 40 and d.n_outputs == 10 and len(d.full[0]) == 5000


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        datasets.load("digts")
    assert "Did you mean 'digits'?" in str(info.value) and "mnist1d" in str(info.value)
