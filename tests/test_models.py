"""Small models: names, seeded initialisation, shapes."""

from __future__ import annotations

import pytest
import torch

from descentlab import datasets, models


@pytest.mark.parametrize("name,shape", [("linear", (5, 3)), ("logistic", (5, 3)), ("mlp", (5, 3)), ("cnn1d", (5, 3))])
def test_shapes_and_seeded_init(name, shape):
    a, b, c = (models.build(name, 40, 3, seed=s) for s in (0, 0, 1))
    out = a(torch.randn(5, 40))
    assert out.shape == shape
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_build_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    models.build("mlp", 4, 2, seed=0)
    assert torch.equal(torch.rand(1), expected)


def test_quadratic_model_gives_the_deepobs_loss():
    d = datasets.load("quadratic_deep")
    m = models.build("quadratic", 100, 1, hessian=d.info["hessian"])
    x = d.test[0][:3]
    q = torch.as_tensor(d.info["hessian"], dtype=torch.float32)
    expected = torch.stack([0.5 * (torch.ones(100) - xi) @ q @ (torch.ones(100) - xi) for xi in x])
    torch.testing.assert_close(m(x), expected, rtol=1e-4, atol=1e-3)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="Did you mean 'mlp'"):
        models.build("mpl", 3, 2)
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        models.build("linear", 0, 2)
