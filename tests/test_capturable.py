"""``capturable=True`` (CUDA graphs): taken by the classes whose torch twin takes it, refused on the CPU as torch
refuses it, and — run on the CPU through the private test hook ``validation.allow_capturable_on`` — a step that
reads nothing back to the host (no ``aten._local_scalar_dense``) and equals the ordinary step to rounding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import descentlab
from descentlab.optim import REGISTRY
from descentlab.optim.validation import allow_capturable_on, check_capturable
from helpers import FUSED_TOL

#: descentlab's rows whose torch twin takes capturable=True (torch 2.13's signatures).
CAPTURABLE_ROWS = ("adam", "adamw", "nadam", "radam", "adamax", "asgd", "rmsprop", "rprop", "adadelta")
VARIANTS = [(name, variant) for name in CAPTURABLE_ROWS for variant in REGISTRY[name].variants]
SHAPES = [(5, 3), (3,), (), (7,)]


class HostReads(TorchDispatchMode):
    """Counts ``aten._local_scalar_dense`` (``.item()``, ``float(t)``, a tensor passed as a Python scalar): on a GPU
    each is a device synchronisation, which a CUDA graph cannot contain."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_the_capturable_rows_are_torchs():
    import inspect

    for name, spec in REGISTRY.items():
        twin = spec.torch_equivalent[0] if spec.torch_equivalent else None
        torch_takes = twin is not None and "capturable" in inspect.signature(twin.__init__).parameters
        assert (name in CAPTURABLE_ROWS) == torch_takes, name
        assert getattr(spec.cls, "supports_capturable", False) == (name in CAPTURABLE_ROWS), name


@pytest.mark.parametrize("name", CAPTURABLE_ROWS)
def test_cpu_parameters_are_refused_as_torch_refuses_them(name):
    """torch raises an ``AssertionError`` at the step; descentlab too, with torch's sentence first, naming the
    tensor, and before anything changed."""
    spec = REGISTRY[name]
    p = torch.nn.Parameter(torch.randn(3))
    q = torch.nn.Parameter(p.detach().clone())
    ours = spec.build([p], capturable=True)
    twin_cls = spec.torch_equivalent[0]
    theirs = twin_cls([q], lr=spec.lr, capturable=True)
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    with pytest.raises(AssertionError) as torch_error:
        theirs.step()
    with pytest.raises(AssertionError) as our_error:
        ours.step()
    message = str(our_error.value)
    assert message.startswith(str(torch_error.value))
    assert "param group 0, parameter 0" in message and "it is on cpu" in message and "capturable=False" in message
    assert torch.equal(p, q) and len(ours.state) == 0


def test_classes_without_capturable_refuse_it():
    with pytest.raises(TypeError):
        descentlab.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, capturable=True)  # as torch.optim.SGD
    opt = descentlab.Adagrad([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match=r"capturable=True is not supported by Adagrad.*Adam, AdamW, NAdam"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "capturable": True})
    with pytest.raises(ValueError, match="capturable must be True or False, got 'yes'"):
        descentlab.Adam([torch.nn.Parameter(torch.zeros(2))], capturable="yes")


def _trajectory(name, variant, capturable, steps=5, impl="auto", count=None):
    spec, opts = REGISTRY[name], REGISTRY[name].variants[variant]
    params = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i))) for i, s in
              enumerate(SHAPES)]
    opt = spec.build(params, capturable=capturable, impl=impl, **opts)
    g = torch.Generator().manual_seed(7)
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = None if step % 3 == 2 and i == 1 else torch.randn(p.shape, generator=g) + 0.2 * p.detach()
        if count is not None:
            with count:
                opt.step()
        else:
            opt.step()
    return params, opt


@pytest.mark.parametrize("name, variant", VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
def test_capturable_step_reads_nothing_back_and_equals_the_ordinary_step(name, variant):
    """Every step of a capturable optimizer, the first included, dispatches no ``_local_scalar_dense``; its weights
    and state equal the ordinary step's to float32 rounding (its bias corrections ``1 − βᵗ`` come from the float32
    step tensor, as torch's capturable ones do, not from a Python float)."""
    reads = HostReads()
    with allow_capturable_on("cpu"):
        cap, cap_opt = _trajectory(name, variant, True, count=reads)
    ref, ref_opt = _trajectory(name, variant, False)
    assert reads.count == 0
    plain = HostReads()
    _trajectory(name, variant, False, impl="reference", count=plain)
    if variant != "no_bias_correction" and name not in ("rmsprop", "rprop", "adadelta"):
        assert plain.count > 0  # the ordinary step does read its step counter (so the count above can fail)
    for i, (p, q) in enumerate(zip(cap, ref)):
        torch.testing.assert_close(p, q, **FUSED_TOL[torch.float32], msg=lambda m: f"param {i}: {m}")
        assert set(cap_opt.state[p]) == set(ref_opt.state[q])
        for key, value in ref_opt.state[q].items():
            torch.testing.assert_close(cap_opt.state[p][key], value, **FUSED_TOL[torch.float32],
                                       msg=lambda m: f"param {i}, {key}: {m}")


@pytest.mark.parametrize("impl", ["fused", "foreach", "torch_fused"])
def test_capturable_takes_the_reference_loop_on_every_impl(impl):
    """The C kernels, the multi-tensor path and torch's fused kernels read Python-number scalars: a capturable
    group steps on the reference loop (with tensor scalars) whatever ``impl`` says."""
    with allow_capturable_on("cpu"):
        a, _ = _trajectory("adam", "plain", True, impl=impl)
        b, _ = _trajectory("adam", "plain", True, impl="reference")
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_capturable_state_is_created_on_the_parameters_device():
    """Every 0-d state entry (``step``, NAdam's ``mu_product``, ASGD's ``eta`` / ``mu``) is a tensor on the parameter's
    device after the first step (here the CPU, as the hook allows); the step is not read to the host."""
    for name in ("nadam", "asgd"):
        with allow_capturable_on("cpu"):
            params, opt = _trajectory(name, "plain", True, steps=1)
        for p in params:
            for key, value in opt.state[p].items():
                assert isinstance(value, torch.Tensor) and value.device == p.device, (name, key)


def test_load_state_dict_keeps_step_on_the_parameters_device_as_torch():
    """torch's ``load_state_dict`` puts a capturable group's ``step`` on the parameter's device as float32, and its
    ``__setstate__`` makes a plain-number step a tensor there; shown with parameters on the ``meta`` device."""
    saved = {"state": {0: {"step": torch.tensor(3.0, dtype=torch.float64), "exp_avg": torch.zeros(2),
                           "exp_avg_sq": torch.zeros(2)}},
             "param_groups": [{"params": [0], "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                               "amsgrad": False, "maximize": False, "foreach": None, "capturable": True,
                               "differentiable": False, "fused": None, "decoupled_weight_decay": False}]}
    for make in (descentlab.Adam, torch.optim.Adam):
        p = torch.nn.Parameter(torch.empty(2, device="meta"))
        opt = make([p], capturable=True)
        opt.load_state_dict(copy.deepcopy(saved))
        step = opt.state[p]["step"]
        assert (step.device.type, step.dtype) == ("meta", torch.float32), make
    numbers = copy.deepcopy(saved)
    numbers["state"][0]["step"] = 3
    ours = descentlab.Adam([torch.nn.Parameter(torch.empty(2, device="meta"))], capturable=True)
    theirs = torch.optim.Adam([torch.nn.Parameter(torch.empty(2, device="meta"))], capturable=True)
    for opt in (ours, theirs):
        opt.load_state_dict(copy.deepcopy(numbers))
    (a,), (b,) = ours.state.values(), theirs.state.values()
    assert (a["step"].device, a["step"].dtype) == (b["step"].device, b["step"].dtype)
    assert a["step"].device.type == "meta"


def test_a_step_left_on_another_device_is_refused():
    """A capturable parameter whose ``step`` is elsewhere (a state made without capturable) is refused as torch
    refuses it, naming the step's device."""
    p = torch.nn.Parameter(torch.empty(2, device="meta"))
    p.grad = torch.empty(2, device="meta")
    group = {"params": [p]}
    with allow_capturable_on("meta"):
        check_capturable("Adam", 0, group, {})
        with pytest.raises(AssertionError, match="its step on cpu"):
            check_capturable("Adam", 0, group, {p: {"step": torch.tensor(1.0)}})
