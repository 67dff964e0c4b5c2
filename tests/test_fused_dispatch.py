"""Which tensors take the torch.compile kernels (descentlab/fused/dispatch.py) — no compilation happens here."""

import pytest
import torch

import descentlab
from descentlab.fused import AUTO_MIN_NUMEL, AUTO_MIN_STEPS, eligible


@pytest.fixture(autouse=True)
def _fuse_small_tensors(monkeypatch):
    """Tests use small tensors; let the fused path take them (the size threshold is tested separately)."""
    monkeypatch.setattr("descentlab.fused.dispatch.FUSED_MIN_NUMEL", 1)
    # These are the torch.compile kernels (the path for non-CPU devices); keep CPU tensors off the C kernels.
    monkeypatch.setattr("descentlab.fused.cpu_step.ENABLED", False)


def _stepped(cls, param, **opts):
    param.grad = torch.ones_like(param)
    opt = cls([param], impl=opts.pop("impl", "reference"), **opts)
    opt.step()
    return opt


def _choice(opt, param, impl):
    group = dict(opt.param_groups[0], impl=impl)
    return eligible(opt.plan(group), param, param.grad, opt.state[param], group)


def test_fused_is_accepted_and_bad_impl_names_the_choices():
    descentlab.RMSprop([torch.nn.Parameter(torch.zeros(2))], impl="fused")
    with pytest.raises(ValueError, match="impl.*fused"):
        descentlab.RMSprop([torch.nn.Parameter(torch.zeros(2))], impl="fast")


@pytest.mark.parametrize("cls, name", [(descentlab.RMSprop, "rmsprop"), (descentlab.Adadelta, "adadelta"),
                                        (descentlab.NAdam, "nadam"), (descentlab.Adam, "adam"),
                                        (descentlab.AdamW, "adam"), (descentlab.Adagrad, "adagrad")])
def test_plain_float_tensors_are_fused_on_request(cls, name):
    for dtype in (torch.float32, torch.float64):
        p = torch.nn.Parameter(torch.zeros(5, dtype=dtype))
        opt = _stepped(cls, p)
        assert _choice(opt, p, "fused") == name
        assert _choice(opt, p, "reference") is None


def test_optimizers_without_kernel_take_reference():
    for cls in (descentlab.SGD,):
        p = torch.nn.Parameter(torch.zeros(5))
        opt = _stepped(cls, p, lr=0.1) if cls is descentlab.SGD else _stepped(cls, p)
        assert _choice(opt, p, "fused") is None


def test_odd_tensors_take_reference():
    p = torch.nn.Parameter(torch.zeros(4, 4).t())  # non-contiguous
    assert _choice(_stepped(descentlab.RMSprop, p), p, "fused") is None
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))
    assert _choice(_stepped(descentlab.RMSprop, p), p, "fused") is None
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.complex64))
    assert _choice(_stepped(descentlab.RMSprop, p), p, "fused") is None
    p = torch.nn.Parameter(torch.zeros(4))
    opt = _stepped(descentlab.RMSprop, p)
    group = dict(opt.param_groups[0], impl="fused")
    assert eligible(opt.plan(group), p, torch.zeros(4, dtype=torch.float64), opt.state[p], group) is None  # grad dtype differs
    assert eligible(opt.plan(group), p, torch.zeros(2, 2), opt.state[p], group) is None  # grad shape differs


def test_fused_skips_tensors_below_the_size_threshold(monkeypatch):
    monkeypatch.setattr("descentlab.fused.dispatch.FUSED_MIN_NUMEL", 100)
    small, big = torch.nn.Parameter(torch.zeros(99)), torch.nn.Parameter(torch.zeros(100))
    assert _choice(_stepped(descentlab.RMSprop, small), small, "fused") is None
    assert _choice(_stepped(descentlab.RMSprop, big), big, "fused") == "rmsprop"


def test_auto_waits_for_size_and_steps():
    small = torch.nn.Parameter(torch.zeros(10))
    opt = _stepped(descentlab.RMSprop, small)
    opt.state[small]["step"].fill_(AUTO_MIN_STEPS)
    assert _choice(opt, small, "auto") is None  # too small, however many steps
    big = torch.nn.Parameter(torch.zeros(AUTO_MIN_NUMEL))
    opt = _stepped(descentlab.RMSprop, big)
    assert _choice(opt, big, "auto") is None  # too early: the compile would not pay for itself
    opt.state[big]["step"].fill_(AUTO_MIN_STEPS)
    assert _choice(opt, big, "auto") == "rmsprop"


def test_missing_state_still_raises_the_reference_error():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = _stepped(descentlab.RMSprop, p, impl="fused")
    opt.param_groups[0]["momentum"] = 0.9
    with pytest.raises(RuntimeError, match="momentum_buffer"):
        opt.step()
