"""Keras 3 itself (``KERAS_BACKEND=torch``, float64 variables) as the executable reference for every Keras preset
and the options they are made of: 60 steps of tests/_conventions.py's problem, at Keras's defaults and under a
schedule that changes the rate every step, within 1e-12 of the distance travelled.

Keras runs with ``floatx="float64"`` (otherwise it stores a float learning rate as a float32 variable).
Skipped (with the reason) where keras does not import; ``pip install 'descentlab[test]'`` installs it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch

from _conventions import STEPS, TOL, gradients, initial_weights, relative_error, run_descentlab, schedule
from descentlab.averaging import WeightEMA
from descentlab.optim.registry import PRESETS, preset

keras: Any = None  # imported by the fixture below, at the first test (importing keras takes seconds)


@pytest.fixture(autouse=True, scope="module")
def _keras():
    global keras
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras as module
    except ImportError as err:  # not installed, or an install that cannot load
        pytest.skip(f"keras does not import ({err}); pip install 'descentlab[test]'")
    keras = module
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on the {keras.backend.backend()!r} backend; these tests need KERAS_BACKEND=torch")
    return keras


@pytest.fixture(autouse=True)
def _float64_keras(_keras):
    """Keras in float64 throughout: with the default floatx (float32) Keras keeps a float learning rate (and
    Nadam's constants) as float32 variables, which rounds η itself by ~1e-8 before any step."""
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(floatx)


def _listed(rates: list[float]) -> Any:
    """A Keras schedule with the rate of step k (Keras calls it with its 0-based ``iterations``, before the step)."""

    class Listed(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> float:
            return rates[int(keras.ops.convert_to_numpy(step))]

    return Listed()


def run_keras(name: str, options: dict, lrs: list[float] | None = None, *, ema: bool = False):
    """Keras's optimizer ``name`` (``options`` in Keras's names) over float64 variables: weights after each
    step, and with ``ema`` the ``use_ema`` averages after each step."""
    if lrs is not None:
        options = {**options, "learning_rate": _listed(lrs)}
    opt = getattr(keras.optimizers, name)(**options)
    variables = [keras.Variable(w.copy(), dtype="float64") for w in initial_weights()]
    trajectory, averages = [], []
    for k in range(STEPS):
        grads = gradients([keras.ops.convert_to_numpy(v) for v in variables], k)
        opt.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in grads], variables)
        trajectory.append([np.asarray(keras.ops.convert_to_numpy(v)) for v in variables])
        if ema:
            averages.append([np.asarray(keras.ops.convert_to_numpy(a)) for a in opt._model_variables_moving_average])
    assert all(str(v.dtype) == "float64" for v in variables)
    return (trajectory, averages) if ema else trajectory


# (Keras class, Keras options, the same options in descentlab's names): the defaults first, then each option
# whose convention the presets carry (momentum and Nesterov: rate in the buffer; weight_decay: decoupled;
# amsgrad; centered; Adam's ε̂ = 1, where the efficient form is far from PyTorch's).
CASES = [
    ("SGD", {}, {}),
    ("SGD", {"momentum": 0.9}, {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"momentum": 0.9, "weight_decay": 0.5}, {"momentum": 0.9, "weight_decay": 0.5}),
    ("RMSprop", {}, {}),
    ("RMSprop", {"momentum": 0.9}, {"momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.5}, {"centered": True, "momentum": 0.5}),
    ("RMSprop", {"weight_decay": 0.5}, {"weight_decay": 0.5}),
    ("Adam", {}, {}),
    ("Adam", {"amsgrad": True}, {"amsgrad": True}),
    ("Adam", {"epsilon": 1.0}, {"eps": 1.0}),
    ("Adam", {"weight_decay": 0.5}, {"weight_decay": 0.5}),
    ("AdamW", {}, {}),
    ("AdamW", {"amsgrad": True, "epsilon": 1.0}, {"amsgrad": True, "eps": 1.0}),
    ("Nadam", {}, {}),
    ("Nadam", {"weight_decay": 0.5}, {"weight_decay": 0.5}),
    ("Adagrad", {}, {}),
    ("Adagrad", {"weight_decay": 0.5}, {"weight_decay": 0.5}),
    ("Adadelta", {}, {}),
    ("Adadelta", {"weight_decay": 0.5}, {"weight_decay": 0.5}),
    ("Adamax", {}, {}),
    ("Adamax", {"weight_decay": 0.5}, {"weight_decay": 0.5}),
]
_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items()) or 'defaults'}" for name, opts, _ in CASES]
# A rate large enough for every term to count over 60 steps (the defaults' own rate in the constant runs).
_RATE = {"SGD": 0.05, "RMSprop": 0.01, "Adam": 0.05, "AdamW": 0.05, "Nadam": 0.05, "Adagrad": 0.1, "Adadelta": 1.0,
         "Adamax": 0.05}


@pytest.mark.parametrize("name,keras_options,options", CASES, ids=_IDS)
def test_preset_reproduces_keras_at_a_constant_rate(name, keras_options, options):
    reference = run_keras(name, keras_options)
    ours = run_descentlab(lambda ps: preset("keras", name, ps, **options))
    error = relative_error(ours, reference)
    assert error <= TOL, f"keras.optimizers.{name}({keras_options}): {error:.2e} off"


@pytest.mark.parametrize("impl", ["reference", pytest.param("auto", marks=pytest.mark.slow),
                                  pytest.param("foreach", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name,keras_options,options", CASES, ids=_IDS)
def test_preset_reproduces_keras_under_a_schedule(name, keras_options, options, impl):
    lrs = schedule(_RATE[name])
    reference = run_keras(name, keras_options, lrs)
    ours = run_descentlab(lambda ps: preset("keras", name, ps, impl=impl, **options), lrs)
    error = relative_error(ours, reference)
    assert error <= TOL, f"keras.optimizers.{name}({keras_options}) under a schedule, impl={impl}: {error:.2e} off"


def test_every_keras_preset_is_tested_here():
    assert {name.lower() for name, _, _ in CASES} == {p.name.lower() for p in PRESETS.values() if p.library == "keras"}


# Each convention matters: without its option, the closest torch-style configuration is far off Keras
# (issue 14's measurements), so the tests above could fail.
WITHOUT = [
    ("SGD", {"momentum": 0.9}, {"momentum": 0.9, "lr_in_buffer": False}),
    ("RMSprop", {"momentum": 0.9}, {"momentum": 0.9, "lr_in_buffer": False}),
    ("Adam", {"epsilon": 1.0}, {"eps": 1.0, "efficient_form": False}),
    ("SGD", {"momentum": 0.9, "weight_decay": 0.5}, {"momentum": 0.9, "weight_decay": 0.5,
                                                      "decoupled_weight_decay": False}),
    ("Adagrad", {"weight_decay": 0.5}, {"weight_decay": 0.5, "decoupled_weight_decay": False}),
    ("Nadam", {}, {"mu_product_dtype": None}),
    ("Adamax", {}, {"eps_placement": "inside"}),
]


@pytest.mark.parametrize("name,keras_options,options", WITHOUT,
                         ids=[f"{name}-{list(opts)[-1]}" for name, _, opts in WITHOUT])
def test_without_the_convention_keras_is_not_reproduced(name, keras_options, options):
    lrs = schedule(_RATE[name])
    reference = run_keras(name, keras_options, lrs)
    ours = run_descentlab(lambda ps: preset("keras", name, ps, **options), lrs)
    assert relative_error(ours, reference) > 100 * TOL


@pytest.mark.parametrize("momentum", [0.99, 0.9])
def test_weight_ema_first_weights_form_is_keras_use_ema(momentum):
    """Keras's ``use_ema``: the average starts at the first weights, ``v ← βv + (1 − β)w`` after, uncorrected."""
    _, averages = run_keras("SGD", {"learning_rate": 0.05, "momentum": 0.9, "use_ema": True,
                                    "ema_momentum": momentum}, ema=True)
    module = torch.nn.Module()
    ours: list[list[np.ndarray]] = []

    def average(opt, params):
        if not hasattr(module, "p0"):
            for i, p in enumerate(params):
                module.register_parameter(f"p{i}", p)
            module.ema = WeightEMA(module, beta=momentum, start="first")
        module.ema.update()
        ours.append([t.numpy().copy() for t in module.ema.averaged().values()])

    run_descentlab(lambda ps: preset("keras", "SGD", ps, lr=0.05, momentum=0.9), after_step=average)
    error = relative_error(ours, averages)
    assert error <= TOL, f"WeightEMA(start='first') vs Keras use_ema: {error:.2e} off"
