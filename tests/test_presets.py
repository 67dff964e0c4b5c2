"""The presets (descentlab.optim.registry.PRESETS): each builds, validates and names its culprits; PyTorch's are
torch.optim bit for bit; the options they carry are kept in and restored from a state_dict; and the weight-EMA
form that Keras's ``use_ema`` and torch's ``AveragedModel`` share. Keras and optax themselves are the references
in test_conventions_keras.py / test_conventions_optax.py."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from descentlab.averaging import WeightEMA
from descentlab.optim.registry import PRESETS, REGISTRY, create_optimizer, get_preset, preset, preset_names

_TORCH = {"SGD": torch.optim.SGD, "RMSprop": torch.optim.RMSprop, "Adam": torch.optim.Adam,
          "AdamW": torch.optim.AdamW, "NAdam": torch.optim.NAdam, "Adagrad": torch.optim.Adagrad,
          "Adadelta": torch.optim.Adadelta, "Adamax": torch.optim.Adamax}


def _params(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in [(5,), (3, 4)]]


def _lr(p):
    return {"lr": 0.01} if p.requires_lr else {}


@pytest.mark.parametrize("key", preset_names())
def test_every_preset_builds_its_row_class_and_steps(key):
    p = PRESETS[key]
    params = _params()
    opt = create_optimizer(key, params, **_lr(p))
    assert type(opt) is REGISTRY[p.optimizer].cls
    for name, value in p.options.items():
        assert opt.param_groups[0][name] == value, (key, name)
    for _ in range(3):
        for q in params:
            q.grad = torch.sin(q.detach())
        opt.step()
    assert all(torch.isfinite(q).all() for q in params)


def test_the_libraries_and_their_counterparts():
    names = {lib: {p.name for p in PRESETS.values() if p.library == lib} for lib in ("keras", "optax", "torch")}
    assert names["keras"] == {"SGD", "RMSprop", "Adam", "AdamW", "Nadam", "Adagrad", "Adadelta", "Adamax"}
    assert names["optax"] == {"sgd", "rmsprop", "adam", "adamw", "amsgrad", "nadam", "nadamw", "adagrad", "adadelta",
                              "adamax", "adamaxw"}
    assert names["torch"] == set(_TORCH)


def test_preset_lookup_is_case_insensitive_and_overrides_win():
    opt = preset("Keras", "adam", _params(), lr=0.1, amsgrad=True)
    assert type(opt) is get_preset("keras", "Adam").build(_params()).__class__
    group = opt.param_groups[0]
    assert (group["lr"], group["amsgrad"], group["efficient_form"], group["eps"]) == (0.1, True, True, 1e-7)
    assert preset("optax", "nadam", _params(), lr=0.1).param_groups[0]["momentum_decay"] == math.inf


@pytest.mark.parametrize("library,name,fragment", [
    ("tensorflow", "Adam", "libraries: keras, optax, torch"),
    ("keras", "Adma", "Did you mean 'adam'"),
    ("optax", "lion", "Presets: sgd, rmsprop"),
])
def test_unknown_presets_name_the_choices(library, name, fragment):
    with pytest.raises(ValueError, match=fragment):
        preset(library, name, _params())


def test_optax_presets_need_a_learning_rate():
    with pytest.raises(ValueError, match="optax.adam has no default learning rate; pass lr="):
        preset("optax", "adam", _params())


@pytest.mark.parametrize("name", list(_TORCH))
def test_torch_presets_are_torch_optim_bit_for_bit(name):
    ours_params, theirs_params = _params(1), _params(1)
    ours = preset("torch", name, ours_params, impl="reference")
    theirs = _TORCH[name](theirs_params)
    for k in range(20):
        for a, b in zip(ours_params, theirs_params):
            a.grad = torch.cos(a.detach() * (k + 1))
            b.grad = torch.cos(b.detach() * (k + 1))
        ours.step()
        theirs.step()
        for a, b in zip(ours_params, theirs_params):
            assert torch.equal(a, b), (name, k)


@pytest.mark.parametrize("key", ["keras-sgd", "keras-rmsprop", "keras-adam", "keras-nadam", "keras-adamax",
                                 "optax-rmsprop", "optax-amsgrad", "optax-nadam"])
def test_preset_options_travel_in_the_state_dict(key):
    """A plain optimizer of the same class that loads a preset's state_dict continues as the preset would."""
    p = PRESETS[key]
    options = {**_lr(p), "momentum": 0.9} if p.optimizer in ("sgd", "rmsprop") else _lr(p)
    if key == "optax-amsgrad":
        options["amsgrad"] = True
    a, b = _params(2, torch.float32), _params(2, torch.float32)
    first = preset(p.library, p.name, a, **options)
    for k in range(3):
        for q in a:
            q.grad = torch.sin(q.detach() + k)
        first.step()
    with torch.no_grad():
        for qa, qb in zip(a, b):
            qb.copy_(qa)
    plain = REGISTRY[p.optimizer].cls(b, **({"lr": 0.5} if p.optimizer in ("sgd",) else {}),
                                      **({"amsgrad": True} if key == "optax-amsgrad" else {}),
                                      **({"momentum": 0.9} if p.optimizer in ("sgd", "rmsprop") else {}))
    plain.load_state_dict(copy.deepcopy(first.state_dict()))  # torch's load shares same-dtype tensors
    for name, value in {**p.options, **options}.items():
        assert plain.param_groups[0][name] == value, (key, name)
    for k in range(5):
        for q in a + b:
            q.grad = torch.cos(q.detach() * k)
        first.step()
        plain.step()
    assert all(torch.equal(qa, qb) for qa, qb in zip(a, b))


def test_nadam_keeps_a_float64_mu_product_through_a_state_dict_of_float32_parameters():
    params = _params(3, torch.float32)
    opt = preset("keras", "Nadam", params)
    for q in params:
        q.grad = torch.ones_like(q)
    opt.step()
    assert opt.state[params[0]]["mu_product"].dtype == torch.float64
    again = preset("keras", "Nadam", _params(3, torch.float32))
    again.load_state_dict(opt.state_dict())
    loaded = again.state[again.param_groups[0]["params"][0]]["mu_product"]
    assert loaded.dtype == torch.float64 and loaded.item() == opt.state[params[0]]["mu_product"].item()


@pytest.mark.parametrize("beta", [0.9, 0.99])
def test_weight_ema_first_weights_form_is_torch_averaged_model(beta):
    """torch's ``AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(β))`` is ``WeightEMA(start="first")``."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(beta))
    ours = WeightEMA(model, beta=beta, start="first")
    zero_start = WeightEMA(model, beta=beta)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4, dtype=torch.float64)
    for _ in range(30):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        theirs.update_parameters(model)
        ours.update()
        zero_start.update()
    averaged = ours.averaged()
    for name, value in theirs.module.named_parameters():
        torch.testing.assert_close(averaged[name], value, rtol=1e-14, atol=1e-15)
    assert max((zero_start.averaged()[n] - v).abs().max().item() for n, v in theirs.module.named_parameters()) > 1e-6


def test_weight_ema_start_is_validated_and_saved():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="start must be one of 'zero', 'first'; got 'last'"):
        WeightEMA(model, start="last")
    with pytest.raises(ValueError, match="bias_correction=True needs start='zero'"):
        WeightEMA(model, start="first", bias_correction=True)
    ema = WeightEMA(model, beta=0.5, start="first")
    assert ema.bias_correction is False and WeightEMA(model).bias_correction is True
    ema.update()
    state = ema.state_dict()
    assert state["start"] == "first"
    again = WeightEMA(model)
    again.load_state_dict(state)
    assert (again.start, again.bias_correction) == ("first", False)
    old = {k: v for k, v in WeightEMA(model).state_dict().items() if k != "start"}  # saved before the option
    again.load_state_dict(old)
    assert (again.start, again.bias_correction) == ("zero", True)
