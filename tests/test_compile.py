"""A step under ``torch.compile`` equals the eager step, for every registry row and variant, on every path.

The bug this guards against: taking ``state["step"].item()`` inside a traced step made Dynamo specialise on a
dynamic Python float, and Inductor's code got ``1 − β^t`` wrong from step 3 on (Adam 38 % off after 12 steps;
NAdam failed a guard). Under compile every path now runs the rules with tensor-valued scalars."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from descentlab.optim import REGISTRY
from optimizer_cases import skip_unmet

pytestmark = pytest.mark.slow  # each case compiles (≈ 1–5 s on 2 cores)

def _one_variant_per_rule() -> list[tuple[str, str]]:
    """Each row's variants, one per distinct rule the plan names (what a compiled graph depends on is the rule's
    code; options of the same rule change numbers only): every row and every convention that has its own rule."""
    found, seen = [], set()
    for name, spec in REGISTRY.items():
        if spec.requires:
            found += [(name, variant) for variant in list(spec.variants)[:1]]
            continue
        for variant, options in spec.variants.items():
            opt = spec.build([torch.nn.Parameter(torch.zeros(3))], **options)
            rules = tuple(plan.rule.__name__ for plan in [opt.plan(opt.param_groups[0])])
            if (name, rules) not in seen:
                seen.add((name, rules))
                found.append((name, variant))
    return found


VARIANTS = _one_variant_per_rule()
#: Rows whose compiled training step runs on all three paths; under compile every path traces the same rules
#: (``RuleOptimizer._step_group``), so the other rows run the default path only.
EVERY_PATH = ("sgd", "momentum", "adam", "nadam", "rmsprop", "adamax", "lion")
#: Rows whose step cannot trace as one graph, and why.
GRAPH_BREAKS = {"adafactor": "Adafactor reads RMS(w) and RMS(U) as Python numbers (.item(), as torch.optim.Adafactor "
                             "does) to form its step size: a graph break per tensor"}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _train(name, options, mode, steps=12):
    """Weights after ``steps`` steps: eager, ``torch.compile`` of the whole training step, or of ``opt.step``."""
    skip_unmet(name)  # an MLP's matrices and biases, dense gradients, step() without a closure
    torch._dynamo.reset()
    model = _model()
    opt = REGISTRY[name].build(model.parameters(), **options)
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.randn(16, 1)
    opt_step = torch.compile(opt.step) if mode == "step" else opt.step

    def train_step():
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt_step()

    run = torch.compile(train_step) if mode == "train" else train_step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            run()
    ours = [str(w.message) for w in caught if "descentlab" in w.filename]
    assert not ours, f"warnings from descentlab code: {ours}"
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def _quiet_dynamo():
    torch._logging.set_logs(dynamo=logging.ERROR)
    yield
    torch._logging.set_logs()


@pytest.mark.parametrize("name, variant", VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
def test_compiled_opt_step_equals_eager(name, variant):
    options = {**REGISTRY[name].variants[variant], "lr": 0.01}
    eager = _train(name, options, "eager")
    compiled = _train(name, options, "step")
    assert _relative(compiled, eager) < 1e-4, (name, variant, _relative(compiled, eager))


@pytest.mark.parametrize("name, impl", [(name, impl) for name in REGISTRY
                                        for impl in (("auto", "reference", "foreach") if name in EVERY_PATH else ("auto",))])
def test_compiled_training_step_equals_eager_on_every_path(name, impl):
    options = {"lr": 0.01, "impl": impl}
    eager = _train(name, options, "eager")
    compiled = _train(name, options, "train")
    assert _relative(compiled, eager) < 1e-4, (name, impl, _relative(compiled, eager))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_opt_step_traces_as_one_graph(name):
    skip_unmet(name)
    if name in GRAPH_BREAKS:
        pytest.skip(GRAPH_BREAKS[name])
    model = _model()
    opt = REGISTRY[name].build(model.parameters(), lr=0.01)
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(opt.step)()
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


def test_a_float64_running_product_is_updated_under_compile():
    """Inductor drops in-place updates of a float64 0-d CPU graph input (torch 2.13): NAdam's Π (float64 with
    ``mu_product_dtype=torch.float64``, Keras's precision, or as torch's loader leaves it) must still advance."""
    import descentlab

    for options in ({}, {"mu_product_dtype": torch.float64}):
        runs = []
        for compiled in (False, True):
            torch._dynamo.reset()
            p = torch.nn.Parameter(torch.ones(3))
            opt = descentlab.NAdam([p], lr=0.1, **options)
            step = torch.compile(opt.step) if compiled else opt.step
            for i in range(4):
                p.grad = torch.full((3,), 1.0 + i)
                step()
            runs.append((p.detach().clone(), opt.state[p]["mu_product"].clone()))
        (eager, eager_mu), (comp, comp_mu) = runs
        assert comp_mu.dtype == eager_mu.dtype and float(comp_mu) == pytest.approx(float(eager_mu), rel=1e-6)
        torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-6)
