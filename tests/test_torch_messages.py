"""torch's messages for torch's bad inputs, and ``fused=True`` validated as torch validates it.

Every ``ErrorOptimizerInput`` that torch's own suite (``optim_db``) holds for a class descentlab shares a name with
is replayed on descentlab's class: the same exception type, a message matching torch's regex — and descentlab's own
wording kept first in it (the live lab reads the allowed range from it)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

import descentlab
from descentlab.optim.validation import TORCH_WORDING

common_optimizers = pytest.importorskip("torch.testing._internal.common_optimizers",
                                        reason="torch's testing internals need expecttest (the test extra)")

TWINS = ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "RMSprop", "NAdam", "Adamax", "RAdam", "ASGD")


def _error_inputs():
    for info in common_optimizers.optim_db:
        name = info.optim_cls.__name__
        if name in TWINS and info.optim_error_inputs_func is not None:
            for error_input in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
                yield pytest.param(name, error_input, id=f"{name}-{error_input.optimizer_error_input.desc}")


@pytest.mark.parametrize(("name", "error_input"), list(_error_inputs()))
def test_torchs_bad_inputs_get_torchs_exception_and_words(name, error_input):
    optim_input = error_input.optimizer_error_input
    cls = getattr(descentlab, name)
    if issubclass(error_input.error_type, Warning):
        with pytest.warns(error_input.error_type, match=error_input.error_regex):
            cls(optim_input.params, **optim_input.kwargs)
        return
    with pytest.raises(error_input.error_type, match=error_input.error_regex):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer = cls(optim_input.params, **optim_input.kwargs)
            if error_input.error_on == common_optimizers.OptimizerErrorEnum.STEP_ERROR:
                optimizer.step()


@pytest.mark.parametrize(("name", "kwargs", "ours", "theirs"), [
    ("Adam", dict(lr=-1.0), "lr must be in [0, inf), got -1.0", "Invalid learning rate: -1.0"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "momentum must be in [0, 1), got -0.5", "Invalid momentum value: -0.5"),
    ("Adadelta", dict(rho=1.1), "rho must be in [0, 1), got 1.1", "Invalid rho value: 1.1"),
    ("NAdam", dict(betas=(1.0, 0.9)), "betas[0] must be in [0, 1), got 1.0", "Invalid beta parameter at index 0: 1.0"),
    ("Adagrad", dict(lr=torch.tensor([0.1, 0.1])), "lr given as a tensor must have exactly one element",
     "Tensor lr must be 1-element"),
])
def test_descentlabs_wording_comes_first_and_torchs_follows(name, kwargs, ours, theirs):
    with pytest.raises(ValueError) as info:
        getattr(descentlab, name)([torch.nn.Parameter(torch.ones(2))], **kwargs)
    message = str(info.value)
    assert message.startswith(ours) and f"(torch.optim: {theirs})" in message, message


def test_classes_without_a_torch_twin_keep_their_own_words():
    with pytest.raises(ValueError) as info:
        descentlab.Lion([torch.nn.Parameter(torch.ones(2))], lr=-1.0)
    assert "torch.optim" not in str(info.value)
    assert set(TORCH_WORDING) >= {"lr", "eps", "betas[0]", "betas[1]", "weight_decay", "momentum"}


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_checks_tensor_rates_before_the_parameters_as_torch(name):
    cls = getattr(descentlab, name)
    for kwargs, pattern in ((dict(lr=torch.tensor(0.001), foreach=True), "lr as a Tensor is not supported"),
                            (dict(betas=(0.9, torch.tensor(0.99))), "both floats or both Tensors"),
                            (dict(betas=(torch.tensor(0.9), torch.tensor(0.99)), foreach=True),
                             r"betas\[0\] as a Tensor is not supported")):
        with pytest.raises(ValueError, match=pattern):
            cls(None, **kwargs)  # torch raises before it reads params; so does descentlab
    p = torch.nn.Parameter(torch.ones(2))
    cls([p], betas=(torch.tensor(0.9), torch.tensor(0.99)))  # both tensors without foreach: accepted, as torch
    cls([p], betas=(0, 0.99))  # an int is a number here (torch would ask for floats)


def _meta_model(dtype=torch.float32):
    with torch.device("meta"):
        return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)).to(dtype)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "Adagrad"])
def test_fused_refuses_meta_parameters_at_the_step_then_steps_them_on_the_cpu(name):
    """torch's test_fused_error_on_params_on_meta, and the same refusal from torch's own class."""
    for cls in (getattr(torch.optim, name), getattr(descentlab, name)):
        model = _meta_model()
        optimizer = cls(model.parameters(), fused=True)
        with torch.device("meta"):
            for p in model.parameters():
                p.grad = torch.rand_like(p)
        with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating point Tensors"):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.to_empty(device="cpu")
        for p in model.parameters():
            p.grad = torch.rand_like(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # descentlab: Adagrad's state created on meta follows the parameter
            optimizer.step()
        assert all(p.is_cpu for p in model.parameters())  # (to_empty: the values are whatever memory held)


@pytest.mark.parametrize("name", ["Adam", "SGD", "Adagrad"])
def test_fused_refuses_complex_parameters_as_torch(name):
    for cls in (getattr(torch.optim, name), getattr(descentlab, name)):
        p = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
        optimizer = cls([p], lr=0.1, fused=True)
        p.grad = torch.randn(3, dtype=torch.complex64)
        with pytest.raises(RuntimeError, match=re.escape("but torch.complex64 and cpu")):
            optimizer.step()


def test_fused_check_names_the_tensor_and_stops_once_a_step_passed():
    good, bad = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    optimizer = descentlab.Adam([{"params": [good]}, {"params": [bad]}], fused=True)
    good.grad, bad.grad = torch.ones(2), torch.ones(2, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match=r"Adam: param group 1, parameter 0, shape \(2,\)"):
        optimizer.step()
    bad.grad = None
    optimizer.step()
    assert not optimizer._need_device_dtype_check_for_fused
    plain = descentlab.Adam([torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))])  # fused=None: no check
    plain.param_groups[0]["params"][0].grad = torch.ones(2, dtype=torch.complex64)
    plain.step()
