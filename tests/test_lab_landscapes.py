"""Landscapes: minima checked numerically, batched evaluation, seeded noise, names."""

from __future__ import annotations

import pytest
import torch

from descentlab.lab.landscapes import LANDSCAPES, get_landscape


@pytest.mark.parametrize("name", list(LANDSCAPES))
def test_listed_minima_are_stationary_and_global_ones_have_f_star(name):
    ls = LANDSCAPES[name]
    values = []
    for m in ls.minima:
        p = torch.tensor(m, dtype=torch.float64)
        assert ls.gradient(p).abs().max() < 1e-6, (name, m)
        h = torch.autograd.functional.hessian(lambda q: ls(q), p)
        assert torch.linalg.eigvalsh(h).min() > 0, (name, m, "not a minimum")
        values.append(float(ls(p)))
    if ls.f_star is not None:
        assert min(values) == pytest.approx(ls.f_star, abs=1e-9)
        # no grid point goes below f*: it really is the global minimum on the domain
        (x0, x1), (y0, y1) = ls.domain
        xs, ys = torch.meshgrid(torch.linspace(x0, x1, 301, dtype=torch.float64),
                                torch.linspace(y0, y1, 301, dtype=torch.float64), indexing="ij")
        assert ls(torch.stack([xs, ys], -1)).min() >= ls.f_star - 1e-9


def test_batched_evaluation_and_seeded_noise():
    ls = get_landscape("himmelblau")
    pts = torch.randn(7, 5, 2, dtype=torch.float64)
    vals = ls(pts)
    assert vals.shape == (7, 5)
    assert torch.allclose(vals[3, 2], ls(pts[3, 2]))
    clean = ls.gradient(pts)
    a = ls.gradient(pts, noise=0.5, generator=torch.Generator().manual_seed(1))
    b = ls.gradient(pts, noise=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, clean)
    assert abs(float((a - clean).std()) - 0.5) < 0.15


def test_double_well_has_one_global_and_one_local_minimum():
    ls = get_landscape("double_well")
    (gx, _), (lx, _) = ls.minima
    assert gx < 0 < lx and float(ls(torch.tensor([gx, 0.0]))) < float(ls(torch.tensor([lx, 0.0])))


def test_unknown_landscape():
    with pytest.raises(ValueError, match="Did you mean 'ravine'"):
        get_landscape("ravin")
