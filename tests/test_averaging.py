"""EMA of numbers, series and model weights, with and without bias correction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab.averaging import EMA, WeightEMA, ema


def test_notes_temperature_numbers():
    avg = EMA(0.98, bias_correction=False)
    avg.update(40.0)
    assert avg.value == pytest.approx(0.8)
    avg.update(49.0)
    assert avg.value == pytest.approx(1.764)
    corrected = EMA(0.98)
    corrected.update(40.0)
    assert corrected.update(49.0) == pytest.approx(1.764 / 0.0396)
    assert round(corrected.value, 2) == 44.55


@pytest.mark.parametrize("beta,window", [(0.9, 10), (0.98, 50), (0.5, 2)])
def test_window(beta, window):
    assert EMA(beta).window == pytest.approx(window)


def _loop(series, beta, bias_correction):
    v, out = 0.0, []
    for t, x in enumerate(series, start=1):
        v = beta * v + (1 - beta) * x
        out.append(v / (1 - beta**t) if bias_correction else v)
    return out


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.98, 0.999])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_vectorised_ema_equals_the_loop(beta, bias_correction):
    series = np.random.default_rng(3).normal(size=500).cumsum()
    expected = _loop(series, beta, bias_correction)
    np.testing.assert_allclose(ema(series, beta, bias_correction=bias_correction), expected, rtol=1e-10, atol=1e-12)
    running = EMA(beta, bias_correction=bias_correction)
    np.testing.assert_allclose([running.update(float(x)) for x in series], expected, rtol=1e-12, atol=1e-12)


def test_ema_keeps_the_kind_of_its_input():
    assert isinstance(ema([1.0, 2.0], 0.5), list)
    assert isinstance(ema(np.array([1.0, 2.0]), 0.5), np.ndarray)
    t = ema(torch.tensor([1.0, 2.0], dtype=torch.float32), 0.5)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    two_d = ema(np.ones((5, 3)), 0.9)
    np.testing.assert_allclose(two_d, np.ones((5, 3)))  # corrected average of a constant is the constant


def test_ema_of_a_million_points_equals_the_loop():
    # long enough that a cumulative-sum closed form over β^(−t) would overflow; speed lives in benchmarks
    x = np.random.default_rng(0).normal(size=1_000_000) + 20.0
    out = ema(x, 0.99)
    expected = np.array(_loop(x, 0.99, True))
    np.testing.assert_allclose(out, expected, rtol=1e-11, atol=0)


def test_tensor_ema_and_state_dict_round_trip():
    avg = EMA(0.9)
    xs = [torch.randn(3) for _ in range(6)]
    for x in xs[:3]:
        avg.update(x)
    resumed = EMA(0.5)
    resumed.load_state_dict(avg.state_dict())
    for x in xs[3:]:
        a, b = avg.update(x), resumed.update(x)
        assert torch.equal(a, b)
    expected = _loop([x.double() for x in xs], 0.9, True)[-1]
    torch.testing.assert_close(avg.value.double(), expected, rtol=1e-6, atol=1e-6)


def test_weight_ema_against_hand_computed_average_of_snapshots():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    avg = WeightEMA(model, beta=0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    snapshots = []
    for _ in range(7):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        opt.step()
        avg.update()
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    weights = np.array([(1 - 0.8) * 0.8 ** (7 - t) for t in range(1, 8)]) / (1 - 0.8**7)
    averaged = avg.averaged()
    for name in ("0.weight", "0.bias", "1.running_mean"):
        expected = sum(w * s[name] for w, s in zip(weights, snapshots))
        torch.testing.assert_close(averaged[name], expected.float(), rtol=1e-5, atol=1e-6)
    assert "1.num_batches_tracked" not in averaged  # integer buffers are not averaged


def test_average_parameters_restores_live_weights_and_copy_to():
    model = torch.nn.Linear(2, 1)
    avg = WeightEMA(model, beta=0.5)
    avg.update()
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    avg.update()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    with avg.average_parameters() as m:
        assert m is model
        torch.testing.assert_close(model.weight, (0.25 * live["weight"] + 0.5 * after["weight"]) / 0.75)
    assert torch.equal(model.weight, after["weight"])
    other = torch.nn.Linear(2, 1)
    avg.copy_to(other)
    torch.testing.assert_close(other.weight, avg.averaged()["weight"])


def test_weight_ema_state_dict_round_trip_and_errors():
    model = torch.nn.Linear(2, 1)
    avg = WeightEMA(model, beta=0.9)
    with pytest.raises(ValueError, match="call update"):
        avg.averaged()
    avg.update()
    clone = WeightEMA(model, beta=0.1)
    clone.load_state_dict(avg.state_dict())
    assert clone.beta == 0.9 and clone.count == 1
    with pytest.raises(ValueError, match="tracks"):
        WeightEMA(torch.nn.Linear(3, 3, bias=False)).load_state_dict(avg.state_dict())


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5, "0.9", True])
def test_bad_beta_is_named(beta):
    for build in (lambda: EMA(beta), lambda: ema([1.0], beta), lambda: WeightEMA(torch.nn.Linear(1, 1), beta)):
        with pytest.raises(ValueError, match="beta must be in"):
            build()


def test_value_before_update_and_wrong_inputs():
    with pytest.raises(ValueError, match="no value yet"):
        EMA(0.9).value
    with pytest.raises(ValueError, match="real number or a tensor"):
        EMA(0.9).update("hot")
    with pytest.raises(ValueError, match="scalar"):
        ema(3.0, 0.9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_weight_ema_of_half_precision_weights_keeps_a_float32_average(dtype):
    # In the weights' own dtype, β·v with β = 0.999 rounds back to v and the average never moves.
    model = torch.nn.Linear(4, 4).to(dtype)
    avg = WeightEMA(model, beta=0.999)
    for _ in range(300):
        avg.update()
    averaged = avg.averaged()["weight"]
    assert averaged.dtype == torch.float32
    torch.testing.assert_close(averaged, model.weight.float(), rtol=1e-4, atol=1e-6)
    other = torch.nn.Linear(4, 4).to(dtype)
    avg.copy_to(other)
    assert other.weight.dtype == dtype
    torch.testing.assert_close(other.weight, model.weight, rtol=0, atol=0)
    resumed = WeightEMA(model, beta=0.5)
    resumed.load_state_dict(avg.state_dict())
    torch.testing.assert_close(resumed.averaged()["weight"], averaged, rtol=0, atol=0)


def test_integer_buffers_keep_their_live_values():
    model, other = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    avg = WeightEMA(model, beta=0.9)
    for _ in range(2):
        model(torch.randn(5, 3))
        avg.update()
    avg.copy_to(other)
    assert model.num_batches_tracked.item() == 2 and other.num_batches_tracked.item() == 0
    torch.testing.assert_close(other.running_mean, avg.averaged()["running_mean"])
    with avg.average_parameters():
        assert model.num_batches_tracked.item() == 2


def test_ema_of_non_finite_values_follows_the_loop():
    # a NaN stays NaN and an inf stays inf afterwards, as with EMA.update value by value
    x = [1.0, float("inf"), 2.0, float("-inf"), 3.0]
    for beta in (0.0, 0.5, 0.9):
        running = EMA(beta)
        expected = [running.update(v) for v in x]
        got = ema(x, beta)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
        assert got[0] == pytest.approx(expected[0])
    assert ema([1.0, float("nan"), 2.0], 0.5, bias_correction=False)[1:] == pytest.approx([np.nan] * 2, nan_ok=True)


def test_ema_rounding_stays_at_ulps_of_the_average_magnitude():
    # against an extended-precision loop: a near-zero-mean series where the value's own size says little
    x = np.random.default_rng(7).normal(size=20_000) * 10.0 ** np.random.default_rng(8).uniform(-6, 6, 20_000)
    for beta in (0.5, 0.99, 0.999):
        ref, scale, v, a = [], [], np.longdouble(0), np.longdouble(0)
        b = np.longdouble(beta)
        for xi in x:
            v = b * v + (1 - b) * np.longdouble(xi)
            a = b * a + (1 - b) * np.longdouble(abs(xi))
            ref.append(v)
            scale.append(a)
        err = np.abs(np.asarray(ema(x, beta, bias_correction=False), dtype=np.longdouble) - np.array(ref))
        assert float((err / np.array(scale)).max()) < 1e-14
