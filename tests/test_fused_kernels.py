"""The torch.compile kernels (the fused path on non-CPU devices), run on CPU against the reference rule, step by step.

Tolerances follow torch's fused-vs-for-loop tests: the fused kernel may round differently (one
expression per element instead of a chain of in-place ops), never more than a few ulps per step.
These tests compile (≈ 10 s of Inductor start-up plus ≈ 3 s per configuration on a cold cache).
"""

import copy

import pytest
import torch
from torch._dynamo.utils import counters

import descentlab

CONFIGS = [
    (descentlab.RMSprop, dict(lr=0.01)),
    (descentlab.RMSprop, dict(lr=0.01, alpha=0.9, centered=True, momentum=0.9, eps_placement="inside",
                              weight_decay=0.1, maximize=True)),
    (descentlab.Adadelta, dict(lr=1.0)),
    (descentlab.Adadelta, dict(lr=0.5, rho=0.8, eps_placement="outside", eps=1e-3, weight_decay=0.05, maximize=True)),
    (descentlab.NAdam, dict(lr=0.01)),
    (descentlab.NAdam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, decoupled_weight_decay=True,
                            eps_placement="inside", maximize=True)),
    (descentlab.NAdam, dict(lr=0.01, weight_decay=0.1)),
    (descentlab.Adam, dict(lr=0.01)),
    (descentlab.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1, eps_placement="inside", bias_correction=False,
                           maximize=True)),
    (descentlab.AdamW, dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True)),
    (descentlab.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.1,
                              eps_placement="inside", maximize=True)),
]
# A fused kernel that fails to compile warns and falls back; here that must fail the test.
pytestmark = [pytest.mark.filterwarnings("error:descentlab. fused"), pytest.mark.slow]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(autouse=True)
def _fuse_small_tensors(monkeypatch):
    """Tests use small tensors; let the fused path take them (the size threshold is tested separately)."""
    monkeypatch.setattr("descentlab.fused.dispatch.FUSED_MIN_NUMEL", 1)
    # These are the torch.compile kernels (the path for non-CPU devices); keep CPU tensors off the C kernels.
    monkeypatch.setattr("descentlab.fused.cpu_step.ENABLED", False)


def _pair(cls, opts, dtype, shapes=((257,), (3, 40), (1,))):
    gen = torch.Generator().manual_seed(0)
    fused = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    return fused, ref, cls(fused, impl="fused", **opts), cls(ref, impl="reference", **opts), gen


def _grads(fused, ref, gen):
    for p, q in zip(fused, ref):
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad, q.grad = g, g.clone()


@pytest.mark.parametrize("cls, opts", CONFIGS, ids=lambda x: getattr(x, "__name__", None) or ",".join(x))
def test_fused_matches_reference_step_by_step(cls, opts):
    fused, ref, of, orf, gen = _pair(cls, opts, torch.float32)
    for _ in range(6):
        _grads(fused, ref, gen)
        of.step(), orf.step()
        for p, q in zip(fused, ref):
            torch.testing.assert_close(p, q, **TOL[torch.float32])
            for key, value in orf.state[q].items():
                torch.testing.assert_close(of.state[p][key], value, **TOL[torch.float32])
                assert of.state[p][key].dtype == value.dtype


def test_float64_parity():
    cls, opts = CONFIGS[0]
    fused, ref, of, orf, gen = _pair(cls, opts, torch.float64)
    for _ in range(4):
        _grads(fused, ref, gen)
        of.step(), orf.step()
    for p, q in zip(fused, ref):
        torch.testing.assert_close(p, q, **TOL[torch.float64])


def test_changing_lr_does_not_recompile_and_is_used():
    cls, opts = CONFIGS[0]
    fused, ref, of, orf, gen = _pair(cls, opts, torch.float32)
    for _ in range(2):  # first step is the reference init, second compiles
        _grads(fused, ref, gen)
        of.step(), orf.step()
    graphs = counters["stats"]["unique_graphs"]
    for k in range(4):
        for opt in (of, orf):
            opt.param_groups[0]["lr"] = 0.003 * (k + 1)
        _grads(fused, ref, gen)
        of.step(), orf.step()
        torch.testing.assert_close(fused[0], ref[0], **TOL[torch.float32])
    assert counters["stats"]["unique_graphs"] == graphs


def test_state_dict_moves_between_paths_and_to_torch():
    cls, opts = CONFIGS[0]
    fused, ref, of, orf, gen = _pair(cls, opts, torch.float32, shapes=((64,),))
    for _ in range(3):
        _grads(fused, ref, gen)
        of.step(), orf.step()
    mirror = [torch.nn.Parameter(fused[0].detach().clone())]
    torch_opt = torch.optim.RMSprop(mirror, **opts)
    torch_opt.load_state_dict(copy.deepcopy(of.state_dict()))  # torch shares, not copies
    back = [torch.nn.Parameter(fused[0].detach().clone())]
    ref_again = cls(back, impl="reference", **opts)
    ref_again.load_state_dict(copy.deepcopy(of.state_dict()))
    g = torch.randn(64, generator=gen)
    for p in (fused[0], mirror[0], back[0]):
        p.grad = g.clone()
    of.step(), torch_opt.step(), ref_again.step()
    torch.testing.assert_close(fused[0], mirror[0], **TOL[torch.float32])
    torch.testing.assert_close(fused[0], back[0], **TOL[torch.float32])
