"""The CPU fused path (C kernels in descentlab/fused/cpu_kernels.h) against the reference rules.

Every kernel and convention is stepped side by side with ``impl="reference"``; parameters and every
state entry (step counters and NAdam's Π included) must agree within a few ulps after each step
(torch's own fused-vs-for-loop standard). Parity with ``torch.optim`` over its option grids is in
test_optim_parity.py.
"""

from __future__ import annotations

import dataclasses
import copy
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import descentlab
from descentlab.fused.abi import kernel_call, kernels_by_rule
from descentlab.fused import cpu_build, cpu_step

CONFIGS = [
    (descentlab.SGD, dict(lr=0.1)),
    (descentlab.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05, maximize=True)),
    (descentlab.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (descentlab.SGD, dict(lr=0.1, momentum=0.8, nesterov=True, momentum_form="ema")),
    (descentlab.Momentum, dict(lr=0.1)),
    (descentlab.Momentum, dict(lr=0.1, beta=0.8, bias_correction=True, weight_decay=0.05)),
    (descentlab.Momentum, dict(lr=0.05, form="sum", maximize=True)),
    (descentlab.Nesterov, dict(lr=0.05, beta=0.8, weight_decay=0.05, maximize=True)),
    (descentlab.Adagrad, dict()),
    (descentlab.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps_placement="inside",
                              weight_decay=0.05, maximize=True)),
    (descentlab.Adadelta, dict()),
    (descentlab.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-3, eps_placement="outside", weight_decay=0.05, maximize=True)),
    (descentlab.RMSprop, dict()),
    (descentlab.RMSprop, dict(centered=True)),
    (descentlab.RMSprop, dict(momentum=0.9, eps_placement="inside")),
    (descentlab.RMSprop, dict(alpha=0.9, centered=True, momentum=0.9, eps_placement="inside", weight_decay=0.05,
                              maximize=True)),
    (descentlab.Adam, dict(lr=0.01)),
    (descentlab.Adam, dict(lr=0.01, amsgrad=True, eps_placement="inside", bias_correction=False, weight_decay=0.05,
                           maximize=True)),
    (descentlab.Adam, dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, decoupled_weight_decay=True)),
    (descentlab.AdamW, dict(lr=0.01, amsgrad=True)),
    (descentlab.NAdam, dict(lr=0.01)),
    (descentlab.NAdam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, decoupled_weight_decay=True,
                            eps_placement="inside", maximize=True)),
    (descentlab.NAdam, dict(lr=0.01, weight_decay=0.1, momentum_decay=0.05)),
    (descentlab.Adamax, dict(lr=0.01)),
    (descentlab.Adamax, dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3, eps_placement="outside", weight_decay=0.1,
                             decoupled_weight_decay=True, maximize=True)),
    (descentlab.RAdam, dict(lr=0.01)),  # β₂ = 0.999: the 6 steps cross from ρ_t ≤ 5 to the rectified branch
    (descentlab.RAdam, dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    (descentlab.RAdam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05)),
    (descentlab.Rprop, dict()),
    (descentlab.Rprop, dict(lr=0.1, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2), weight_decay=0.05, maximize=True)),
    (descentlab.ASGD, dict()),  # t0 = 1e6: μ stays 1, ā copies w
    # λ large enough that η_t visibly decays; t0 = 2: the average (μ_t = 1/(t − t₀)) starts mid-run
    (descentlab.ASGD, dict(lr=0.05, lambd=0.5, alpha=0.6, t0=2, weight_decay=0.05, maximize=True)),
    (descentlab.Lion, dict(lr=0.01)),
    (descentlab.Lion, dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.3, maximize=True)),
    (descentlab.Lion, dict(lr=0.01, weight_decay=1e-3, decoupled_weight_decay=True)),
    (descentlab.ScheduleFreeSGD, dict(lr=0.1)),
    (descentlab.ScheduleFreeSGD, dict(lr=0.1, momentum=0.8, weight_decay=0.05, warmup_steps=3, r=0.5,
                                      weight_lr_power=1.0, maximize=True)),
    (descentlab.ScheduleFreeAdamW, dict(lr=0.01)),
    (descentlab.ScheduleFreeAdamW, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.1, warmup_steps=3, r=1.0,
                                        maximize=True)),
]
# 70 001 elements: more than one thread's share and an odd vector tail; () and (1,) are single elements.
SHAPES = [(70_001,), (3, 40), (1,), (), (2, 2, 2)]
# float32: torch.testing's defaults, which torch's own fused-vs-for-loop optimizer tests use (1 ulp of a
# momentum buffer of size ~30 is 2e-6, and a sum that cancels keeps that absolute error).
TOL = {torch.float32: dict(rtol=1.3e-6, atol=1e-5), torch.float64: dict(rtol=1e-13, atol=1e-13)}
pytestmark = [pytest.mark.filterwarnings("error:descentlab. CPU fused kernels unavailable"),
              pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                 reason="no C compiler: the C kernels cannot be built here (the fallback is tested "
                                        "by test_without_a_compiler_steps_fall_back_with_one_warning)"),
              pytest.mark.usefixtures("gatherer")]


def _ident(value):
    return getattr(value, "__name__", None) or ",".join(f"{k}={v}" for k, v in value.items()) or "defaults"


def _twins(cls, opts, dtype, shapes=SHAPES, seed=0):
    gen = torch.Generator().manual_seed(seed)
    fused = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    return fused, ref, cls(fused, impl="fused", **opts), cls(ref, impl="reference", **opts), gen


def _same_grads(fused, ref, gen):
    for p, q in zip(fused, ref):
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.1 * p.detach()
        p.grad, q.grad = g, g.clone()


def _assert_close(fused, ref, of, orf, dtype, where):
    for i, (p, q) in enumerate(zip(fused, ref)):
        torch.testing.assert_close(p, q, **TOL[dtype], msg=lambda m: f"{where}, param {i}: {m}")
        assert set(of.state[p]) == set(orf.state[q])
        for key, value in orf.state[q].items():
            torch.testing.assert_close(torch.as_tensor(of.state[p][key]), torch.as_tensor(value), **TOL[dtype],
                                       msg=lambda m: f"{where}, param {i}, state {key!r}: {m}")


def _fused_count(opt) -> int:
    """How many parameters the C kernels stepped in the latest step."""
    return cpu_step.fused_tensor_count(opt)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cls, opts", CONFIGS, ids=_ident)
def test_kernel_matches_reference_step_by_step(cls, opts, dtype):
    fused, ref, of, orf, gen = _twins(cls, opts, dtype)
    for step in range(1, 7):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
        _assert_close(fused, ref, of, orf, dtype, f"{cls.__name__}{opts} step {step}")
    assert _fused_count(of) == len(fused), "every tensor should have taken the C kernel"
    assert _fused_count(orf) == 0


BIT_EXACT = [(descentlab.ASGD, dict(lr=0.05, lambd=0.5, alpha=0.6, t0=2, weight_decay=0.05, maximize=True)),
             (descentlab.Lion, dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.3, maximize=True)),
             (descentlab.ScheduleFreeSGD, dict(lr=0.1, momentum=0.8, weight_decay=0.05, warmup_steps=3, r=0.5))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cls, opts", BIT_EXACT, ids=lambda v: getattr(v, "__name__", None) or "opts")
def test_kernels_without_a_square_root_equal_the_reference_bit_for_bit(cls, opts, dtype):
    """ASGD, Lion and schedule-free SGD use only ops whose rounding the kernels mirror (mul, fma-add, lerp, sign):
    their C path must give the reference rule's bits (docs/speed.md says so), which keeps impl="auto" equal to
    torch / lion-pytorch / schedulefree to the bit."""
    fused, ref, of, orf, gen = _twins(cls, opts, dtype)
    for step in range(1, 9):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
        for i, (p, q) in enumerate(zip(fused, ref)):
            assert torch.equal(p, q), f"step {step}, param {i}"
            for key, value in orf.state[q].items():
                assert torch.equal(torch.as_tensor(of.state[p][key]), torch.as_tensor(value)), (step, i, key)
    assert _fused_count(of) == len(fused)


def test_asgd_scalars_of_either_dtype_each_take_their_own_bit():
    """ASGD's η_t and μ_t are 0-d state of torch's default dtype (float64 under a float64 default), independent of
    the parameters' dtype and of each other once loaded or replaced: float32 parameters with a float64 η and a
    float32 μ (and the other way round) must step as the reference rule does, and each scalar keep its dtype."""
    for eta_dtype, mu_dtype in ((torch.float64, torch.float32), (torch.float32, torch.float64)):
        fused, ref, of, orf, gen = _twins(descentlab.ASGD, dict(lr=0.05, lambd=0.5, t0=2), torch.float32)
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
        for opt, params in ((of, fused), (orf, ref)):
            for p in params:
                opt.state[p]["eta"] = opt.state[p]["eta"].to(eta_dtype)
                opt.state[p]["mu"] = opt.state[p]["mu"].to(mu_dtype)
        for step in range(2, 7):
            _same_grads(fused, ref, gen)
            of.step()
            orf.step()
            _assert_close(fused, ref, of, orf, torch.float32, f"eta {eta_dtype}, mu {mu_dtype}, step {step}")
            assert _fused_count(of) == len(fused)
        for p, q in zip(fused, ref):
            assert (of.state[p]["eta"].dtype, of.state[p]["mu"].dtype) == (eta_dtype, mu_dtype)
            assert torch.equal(of.state[p]["eta"], orf.state[q]["eta"])  # computed in double on both paths
            assert torch.equal(of.state[p]["mu"], orf.state[q]["mu"])
        assert of.state[fused[0]]["mu"].item() == 0.25  # step 6, t0 = 2: μ = 1/(6 − 2), the average is on


# bf16 parameters with float32 state: the parameter is rounded from the float32 result on both paths, so it agrees
# to bf16's rounding (tests/test_fused_cpu_gather_fuzz.py's tolerance), the float32 state to float32's
BF16_CONFIGS = [(descentlab.ASGD, dict(lr=0.05, lambd=0.5, t0=2)), (descentlab.Lion, dict(lr=0.01, weight_decay=0.1)),
                (descentlab.ScheduleFreeSGD, dict(lr=0.1, weight_decay=0.05)),
                (descentlab.ScheduleFreeAdamW, dict(lr=0.01, weight_decay=0.1))]


@pytest.mark.parametrize("cls, opts", BF16_CONFIGS, ids=lambda v: getattr(v, "__name__", None) or "opts")
def test_new_kernels_with_bf16_parameters_and_float32_state(cls, opts):
    gen = torch.Generator().manual_seed(5)
    made = [torch.randn(s, generator=gen).to(torch.bfloat16) for s in ((40_001,), (3, 7), ())]
    fused = [torch.nn.Parameter(t.clone()) for t in made]
    ref = [torch.nn.Parameter(t.clone()) for t in made]
    of = cls(fused, impl="fused", state_dtype=torch.float32, **opts)
    orf = cls(ref, impl="reference", state_dtype=torch.float32, **opts)
    for step in range(5):
        for p, q in zip(fused, ref):
            g = torch.randn(p.shape, generator=gen).to(torch.bfloat16)
            p.grad, q.grad = g, g.clone()
        of.step()
        orf.step()
    assert _fused_count(of) == len(fused)
    for p, q in zip(fused, ref):
        torch.testing.assert_close(p, q, rtol=1.6e-2, atol=1e-5)
        for key, value in orf.state[q].items():
            assert of.state[p][key].dtype == value.dtype
            torch.testing.assert_close(of.state[p][key], value, **TOL[torch.float32], msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("cls", [descentlab.ASGD, descentlab.Lion, descentlab.ScheduleFreeSGD,
                                 descentlab.ScheduleFreeAdamW], ids=lambda c: c.__name__)
def test_auto_takes_the_c_kernel_for_the_new_rules(cls):
    """``impl="auto"`` on CPU: the rule has a kernel now, so its float32 tensors go to C, not to the foreach path —
    except ScheduleFreeAdamW, whose kernel is ``impl="fused"``'s only (its correctly rounded √ is not torch's
    sqrt, and ``auto`` keeps the schedulefree package's results to the bit; see fused/abi.py)."""
    for impl in ("auto", "fused"):
        params = [torch.nn.Parameter(torch.randn(10)) for _ in range(3)]
        opt = cls(params, impl=impl)
        for _ in range(2):
            for p in params:
                p.grad = torch.randn(10)
            opt.step()
        fused_only = cls is descentlab.ScheduleFreeAdamW and impl == "auto"
        assert _fused_count(opt) == (0 if fused_only else len(params)), impl
        assert (kernel_call(opt.plan(opt.param_groups[0]), impl) is None) == fused_only


def test_schedulefree_train_eval_switch_around_fused_steps():
    """eval() / train() move the parameters between y and x outside the step; the fused steps taken between
    the switches agree with the reference path's, and step() in eval mode still refuses."""
    fused, ref, of, orf, gen = _twins(descentlab.ScheduleFreeAdamW, dict(lr=0.01, warmup_steps=2), torch.float32)
    for step in range(6):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
        if step % 2:
            of.eval()
            orf.eval()
            _assert_close(fused, ref, of, orf, torch.float32, f"eval after step {step}")
            with pytest.raises(RuntimeError, match="eval mode"):
                of.step()
            of.train()
            orf.train()
    _assert_close(fused, ref, of, orf, torch.float32, "train")
    assert _fused_count(of) == len(fused)


def test_result_does_not_depend_on_the_thread_count():
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            fused, _, of, _, gen = _twins(descentlab.Adam, dict(lr=0.01, amsgrad=True), torch.float32,
                                          shapes=[(100_003,), (5,), (40_000,)])
            for _ in range(4):
                _same_grads(fused, fused, gen)
                of.step()
            results.append([p.detach().clone() for p in fused])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_learning_rate_changing_every_step_is_used():
    fused, ref, of, orf, gen = _twins(descentlab.RMSprop, dict(lr=0.01, momentum=0.5), torch.float32)
    rates = [0.01, 0.003, 0.05, 0.0, 0.02]
    for rate in rates:
        for opt in (of, orf):
            opt.param_groups[0]["lr"] = rate
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
    _assert_close(fused, ref, of, orf, torch.float32, "changing lr")


def test_tensor_learning_rate():
    fused, ref, of, orf, gen = _twins(descentlab.Adam, dict(lr=torch.tensor(0.01)), torch.float32)
    for rate in (0.01, 0.002):
        of.param_groups[0]["lr"].fill_(rate)
        orf.param_groups[0]["lr"].fill_(rate)
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
    _assert_close(fused, ref, of, orf, torch.float32, "tensor lr")


def test_one_group_mixing_dtypes_and_odd_tensors():
    """float32 and float64 tensors go to two kernel calls; bf16, complex, non-contiguous and empty tensors
    take the reference rule — all in one group, all equal to a reference-only optimizer."""
    gen = torch.Generator().manual_seed(3)
    made = [torch.randn(300, generator=gen), torch.randn(7, generator=gen, dtype=torch.float64),
            torch.randn(9, generator=gen).to(torch.bfloat16), torch.randn(4, generator=gen, dtype=torch.complex64),
            torch.randn(6, 5, generator=gen).t(), torch.zeros(0)]
    fused = [torch.nn.Parameter(t.clone()) for t in made]
    ref = [torch.nn.Parameter(t.clone()) for t in made]
    of, orf = descentlab.Adam(fused, lr=0.01, impl="fused"), descentlab.Adam(ref, lr=0.01, impl="reference")
    for _ in range(4):
        for p, q in zip(fused, ref):
            g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.grad, q.grad = g, g.clone()
        of.step()
        orf.step()
    torch.testing.assert_close(fused[0], ref[0], **TOL[torch.float32])
    torch.testing.assert_close(fused[1], ref[1], **TOL[torch.float64])
    for p, q in zip(fused[2:], ref[2:]):  # reference rule on both sides: bit for bit
        assert torch.equal(p, q)
    assert _fused_count(of) == 2


def test_replaced_state_and_loaded_state_dict_are_picked_up():
    fused, ref, of, orf, gen = _twins(descentlab.Adam, dict(lr=0.01), torch.float32)
    for _ in range(2):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
    # a state tensor replaced by user code: the kernel must step the new tensor, not the cached one
    for opt, p in ((of, fused[0]), (orf, ref[0])):
        opt.state[p]["exp_avg"] = torch.full_like(p, 0.5).detach()
    # load_state_dict replaces every state tensor (copy: torch shares tensors with the loaded dict)
    saved = copy.deepcopy(orf.state_dict())
    of.load_state_dict(copy.deepcopy(saved))
    orf.load_state_dict(copy.deepcopy(saved))
    for _ in range(3):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
    _assert_close(fused, ref, of, orf, torch.float32, "after replacing state")


def test_parameter_cast_after_steps_moves_state_and_keeps_fusing():
    fused, ref, of, orf, gen = _twins(descentlab.RMSprop, dict(centered=True), torch.float32, shapes=[(50,), (3, 3)])
    _same_grads(fused, ref, gen)
    of.step()
    orf.step()
    for p in fused + ref:
        p.data = p.data.double()
    with pytest.warns(UserWarning, match="moved to torch.float64"):
        for _ in range(3):
            _same_grads(fused, ref, gen)
            of.step()
            orf.step()
    _assert_close(fused, ref, of, orf, torch.float64, "after .double()")
    assert all(of.state[p]["square_avg"].dtype == torch.float64 for p in fused)


def test_state_dict_moves_between_fused_reference_and_torch():
    fused, ref, of, orf, gen = _twins(descentlab.NAdam, dict(lr=0.01), torch.float32)
    for _ in range(3):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    torch_opt = torch.optim.NAdam(theirs, lr=0.01)
    torch_opt.load_state_dict(copy.deepcopy(of.state_dict()))
    for _ in range(3):
        _same_grads(fused, ref, gen)
        for p, q in zip(theirs, fused):
            p.grad = q.grad.clone()
        of.step()
        orf.step()
        torch_opt.step()
    _assert_close(fused, ref, of, orf, torch.float32, "continued")
    for p, q in zip(theirs, fused):
        torch.testing.assert_close(p, q, **TOL[torch.float32])


def test_skip_policy_leaves_fused_state_untouched():
    fused, _, of, _, gen = _twins(descentlab.Adam, dict(lr=0.01, nonfinite="skip"), torch.float32, shapes=[(64,)])
    _same_grads(fused, fused, gen)
    of.step()
    before = {k: v.clone() for k, v in of.state[fused[0]].items()}
    weights = fused[0].detach().clone()
    fused[0].grad[3] = float("nan")
    of.step()
    assert of.skipped_steps == 1 and torch.equal(fused[0], weights)
    assert all(torch.equal(of.state[fused[0]][k], v) for k, v in before.items())


def test_subclasses_keep_the_fused_path_and_unknown_rules_take_the_reference_loop():
    class MyAdam(descentlab.Adam):  # a plain subclass: its plan is Adam's, so is its path
        pass

    ps = [torch.nn.Parameter(torch.randn(10)) for _ in range(2)]
    qs = [p.detach().clone().requires_grad_() for p in ps]
    mine, theirs = MyAdam(ps, lr=0.01, impl="fused"), descentlab.Adam(qs, lr=0.01, impl="fused")
    for _ in range(3):
        for p, q in zip(ps, qs):
            p.grad = torch.randn(10)
            q.grad = p.grad.clone()
        mine.step()
        theirs.step()
    assert _fused_count(mine) == 2 == _fused_count(theirs)
    assert all(torch.equal(p, q) for p, q in zip(ps, qs))

    calls = []

    def logged_adam(param, grad, exp_avg, exp_avg_sq, *, step, **hp):  # a rule with no kernel: the reference loop
        calls.append(step)
        descentlab.rules.adam(param, grad, exp_avg, exp_avg_sq, step=step, **hp)

    class Logged(descentlab.Adam):
        def plan(self, group):
            return dataclasses.replace(super().plan(group), rule=logged_adam)

    p = torch.nn.Parameter(torch.randn(10))
    opt = Logged([p], lr=0.01, impl="fused")
    for _ in range(3):
        p.grad = torch.randn(10)
        opt.step()
    assert calls == [1.0, 2.0, 3.0] and _fused_count(opt) == 0

    q = torch.nn.Parameter(torch.randn(10))
    opt = descentlab.SGD([q], lr=0.1, impl="fused")
    q.grad = q.data  # the gradient *is* the parameter's memory
    expected = q.detach() * 0.9
    opt.step()
    torch.testing.assert_close(q.detach(), expected)


def test_sparse_gradients_still_raise_the_reference_error():
    p = torch.nn.Parameter(torch.zeros(5))
    opt = descentlab.Adam([p], impl="fused")
    p.grad = torch.zeros(5).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.slow
def test_the_library_is_built_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    first = cpu_build.build()
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path and first.name.endswith(".so")
    assert cpu_build.build() == first and first.stat().st_mtime_ns == stamp
    assert [f.name for f in tmp_path.iterdir()] == [first.name]  # no temporary files left behind


@pytest.mark.slow
@pytest.mark.filterwarnings("default")
def test_without_a_compiler_steps_fall_back_with_one_warning(tmp_path):
    script = textwrap.dedent("""
        import warnings, torch, descentlab
        ps = [torch.nn.Parameter(torch.ones(4)) for _ in range(2)]
        qs = [torch.nn.Parameter(torch.ones(4)) for _ in range(2)]
        a = descentlab.Adam(ps, lr=0.1, impl="fused")
        b = descentlab.Adam(qs, lr=0.1, impl="reference")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                for p, q in zip(ps, qs):
                    p.grad = torch.full((4,), 0.5); q.grad = torch.full((4,), 0.5)
                a.step(); b.step()
        messages = [str(w.message) for w in caught if "fused kernels unavailable" in str(w.message)]
        assert len(messages) == 1, messages
        assert all(torch.equal(p, q) for p, q in zip(ps, qs))
        print("OK", messages[0])
    """)
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), DESCENTLAB_KERNEL_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout and "no-such-cc" in out.stdout


#: The rules that have a C kernel; a rule without one runs on the reference loop (kernels are optional).
RULES_WITH_KERNELS = {"sgd", "heavy_ball", "ema_momentum", "adagrad", "adadelta", "rmsprop", "centered_rmsprop",
                      "adam", "amsgrad", "nadam", "adamax", "adamax_eps_outside", "radam", "rprop", "asgd", "lion",
                      "schedulefree_sgd", "schedulefree_adamw"}


def test_which_rules_have_c_kernels():
    assert set(kernels_by_rule()) == RULES_WITH_KERNELS


def _kernel_variants():
    from descentlab.optim.registry import REGISTRY

    found = []
    for name, spec in REGISTRY.items():
        if spec.requires:  # matrices, sparse gradients, a closure: rows without element-wise kernels
            continue
        for variant, options in spec.variants.items():
            opt = spec.build([torch.nn.Parameter(torch.zeros(3))], **options)
            if kernel_call(opt.plan(opt.param_groups[0]), "fused") is not None:
                found.append((name, variant))
    return found


KERNEL_VARIANTS = _kernel_variants()


@pytest.mark.slow  # ≈ 3.5 min for ~130 variant × dtype cases under both gatherers; CONFIGS covers each kernel fast
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, variant", KERNEL_VARIANTS, ids=[f"{n}-{v}" for n, v in KERNEL_VARIANTS])
def test_every_registry_variant_with_a_kernel_matches_the_reference_step_by_step(name, variant, dtype):
    """A new kernel is checked for every variant of its row, not only for the hand-picked CONFIGS."""
    from descentlab.optim.registry import REGISTRY

    spec = REGISTRY[name]
    opts = {**spec.defaults, **spec.variants[variant]}
    fused, ref, of, orf, gen = _twins(spec.cls, opts, dtype)
    for step in range(1, 7):
        _same_grads(fused, ref, gen)
        of.step()
        orf.step()
        _assert_close(fused, ref, of, orf, dtype, f"{name}/{variant} step {step}")
    assert _fused_count(of) == len(fused) and _fused_count(orf) == 0


def test_every_registry_variant_whose_rule_has_a_kernel_gets_a_kernel_call():
    from descentlab.optim.registry import REGISTRY

    from descentlab.fused.abi import CPU_KERNELS

    for name, spec in REGISTRY.items():
        if spec.requires:  # matrices, sparse gradients, a closure: built on other inputs, no C kernels
            continue
        for variant, options in spec.variants.items():
            p = torch.nn.Parameter(torch.zeros(3))
            opt = spec.build([p], **options)
            plan = opt.plan(opt.param_groups[0])
            assert plan.rule.__module__.startswith("descentlab.rules"), (name, variant)
            if plan.name in RULES_WITH_KERNELS:
                if plan.decoupled and "decoupled" not in CPU_KERNELS[plan.rule].hp:
                    # a convention this kernel does not implement: the plan goes to the reference / foreach paths
                    assert kernel_call(plan, "fused") is None, (name, variant)
                else:
                    assert kernel_call(plan, "fused") is not None, (name, variant)
                    assert (kernel_call(plan) is not None) == CPU_KERNELS[plan.rule].auto, (name, variant)


@pytest.mark.slow
def test_an_unwritable_cache_folder_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be")  # mkdir fails, even for root
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(blocker / "kernels"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    built = cpu_build.build()
    assert built.exists() and built.parent.parent == tmp_path / "tmp"
    assert blocker.read_text().startswith("a file")


def test_tensor_subclasses_take_the_reference_rule():
    """A subclass (DTensor under FSDP2 is one) may not own the memory its numel describes: never fused."""

    class Wrapped(torch.Tensor):
        pass

    p = torch.nn.Parameter(torch.ones(6))
    q = torch.nn.Parameter(torch.ones(6))
    opt_p = descentlab.SGD([p], lr=0.1, momentum=0.9, impl="fused")
    opt_q = descentlab.SGD([q], lr=0.1, momentum=0.9, impl="reference")
    for _ in range(3):
        p.grad = torch.full((6,), 0.5).as_subclass(Wrapped)
        q.grad = torch.full((6,), 0.5)
        opt_p.step()
        opt_q.step()
    assert _fused_count(opt_p) == 0  # the parameter passes its check, the subclass gradient does not
    assert torch.equal(p.detach(), q.detach())
