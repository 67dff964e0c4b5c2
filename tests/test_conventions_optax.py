"""optax itself (jax with x64) as the executable reference for every optax preset and the options they are made
of: 60 steps of tests/_conventions.py's problem, at optax's defaults and under a schedule that changes the rate
every step, within 1e-12 of the distance travelled.

Skipped (with the reason) where jax or optax does not import; ``pip install 'descentlab[test]'`` installs them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from _conventions import STEPS, TOL, gradients, initial_weights, relative_error, run_descentlab, schedule
from descentlab.optim.registry import PRESETS, preset

jax: Any = None  # imported by the fixture below, at the first test (importing jax takes seconds)
optax: Any = None
jnp: Any = None


@pytest.fixture(autouse=True, scope="module")
def _optax():
    global jax, optax, jnp
    try:
        import jax as jax_module
        import optax as optax_module
    except ImportError as err:  # not installed, or an install that cannot load
        pytest.skip(f"jax / optax do not import ({err}); pip install 'descentlab[test]'")
    jax, optax, jnp = jax_module, optax_module, jax_module.numpy


@pytest.fixture(autouse=True)
def _x64(_optax):
    """jax in float64 (it computes in float32 unless x64 is on)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def run_optax(name: str, options: dict, lr: float, lrs: list[float] | None = None):
    """optax's ``name`` (``options`` in optax's names) over float64 arrays: the weights after each step."""
    rate = lr if lrs is None else (lambda count, table=jnp.asarray(lrs): table[count])
    tx = getattr(optax, name)(learning_rate=rate, **options)
    params = [jnp.asarray(w) for w in initial_weights()]
    state = tx.init(params)
    trajectory = []
    for k in range(STEPS):
        grads = [jnp.asarray(g) for g in gradients([np.asarray(p) for p in params], k)]
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append([np.asarray(p) for p in params])
    assert all(p.dtype == jnp.float64 for p in params)
    return trajectory


# (optax alias, optax options, the same options in descentlab's names, the rate)
CASES = [
    ("sgd", {}, {}, 0.05),
    ("sgd", {"momentum": 0.9}, {"momentum": 0.9}, 0.05),
    ("sgd", {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True}, 0.05),
    ("rmsprop", {}, {}, 0.01),
    ("rmsprop", {"momentum": 0.9}, {"momentum": 0.9}, 0.01),
    ("rmsprop", {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True}, 0.01),
    ("rmsprop", {"centered": True, "momentum": 0.5}, {"centered": True, "momentum": 0.5}, 0.01),
    ("rmsprop", {"initial_scale": 1.0}, {"initial_scale": 1.0}, 0.01),
    ("rmsprop", {"eps_in_sqrt": False, "eps": 1e-3}, {"eps_placement": "outside", "eps": 1e-3}, 0.01),
    ("adam", {}, {}, 0.05),
    ("adamw", {}, {}, 0.05),
    ("adamw", {"weight_decay": 0.5}, {"weight_decay": 0.5}, 0.05),
    ("amsgrad", {}, {}, 0.05),
    ("nadam", {}, {}, 0.05),
    ("nadamw", {"weight_decay": 0.5}, {"weight_decay": 0.5}, 0.05),
    ("adagrad", {}, {}, 0.1),
    ("adadelta", {}, {}, 1.0),
    ("adadelta", {"weight_decay": 0.5}, {"weight_decay": 0.5}, 1.0),
    ("adamax", {}, {}, 0.05),
    ("adamaxw", {"weight_decay": 0.5}, {"weight_decay": 0.5}, 0.05),
]
_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items()) or 'defaults'}" for name, opts, _, _ in CASES]


@pytest.mark.parametrize("name,optax_options,options,lr", CASES, ids=_IDS)
def test_preset_reproduces_optax_at_a_constant_rate(name, optax_options, options, lr):
    reference = run_optax(name, optax_options, lr)
    ours = run_descentlab(lambda ps: preset("optax", name, ps, lr=lr, **options))
    error = relative_error(ours, reference)
    assert error <= TOL, f"optax.{name}({optax_options}): {error:.2e} off"


@pytest.mark.parametrize("impl", ["reference", pytest.param("auto", marks=pytest.mark.slow),
                                  pytest.param("foreach", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name,optax_options,options,lr", CASES, ids=_IDS)
def test_preset_reproduces_optax_under_a_schedule(name, optax_options, options, lr, impl):
    lrs = schedule(lr)
    reference = run_optax(name, optax_options, lr, lrs)
    ours = run_descentlab(lambda ps: preset("optax", name, ps, lr=lr, impl=impl, **options), lrs)
    error = relative_error(ours, reference)
    assert error <= TOL, f"optax.{name}({optax_options}) under a schedule, impl={impl}: {error:.2e} off"


def test_every_optax_preset_is_tested_here():
    assert {name for name, _, _, _ in CASES} == {p.name for p in PRESETS.values() if p.library == "optax"}


def test_optax_adadelta_without_a_rate_ascends():
    """``optax.adadelta(learning_rate=None)`` skips the sign flip: it is ``lr=1, maximize=True``."""
    tx = optax.adadelta()
    params = [jnp.asarray(w) for w in initial_weights()]
    state, trajectory = tx.init(params), []
    for k in range(STEPS):
        updates, state = tx.update([jnp.asarray(g) for g in gradients([np.asarray(p) for p in params], k)],
                                   state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append([np.asarray(p) for p in params])
    ours = run_descentlab(lambda ps: preset("optax", "adadelta", ps, lr=1.0, maximize=True))
    assert relative_error(ours, trajectory) <= TOL


# Each convention matters: without its option the closest PyTorch-style configuration is off optax.
WITHOUT = [
    ("rmsprop", {"momentum": 0.9}, {"momentum": 0.9, "lr_in_buffer": False}, 0.01),
    ("rmsprop", {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": False}, 0.01),
    ("rmsprop", {"initial_scale": 1.0}, {"initial_scale": 0.0}, 0.01),
    ("amsgrad", {}, {"amsgrad_max": "raw"}, 0.05),
    ("nadam", {}, {"momentum_decay": 4e-3}, 0.05),
    ("nadam", {}, {"momentum_decay": 1e4, "mu_product_dtype": None}, 0.05),
]


@pytest.mark.parametrize("name,optax_options,options,lr", WITHOUT,
                         ids=[f"{w[0]}-{'-'.join(f'{k}={v}' for k, v in w[2].items())}" for w in WITHOUT])
def test_without_the_convention_optax_is_not_reproduced(name, optax_options, options, lr):
    lrs = schedule(lr)
    reference = run_optax(name, optax_options, lr, lrs)
    ours = run_descentlab(lambda ps: preset("optax", name, ps, lr=lr, **options), lrs)
    assert relative_error(ours, reference) > 100 * TOL

