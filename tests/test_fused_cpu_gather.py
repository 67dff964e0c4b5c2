"""The native gatherer (descentlab/fused/cpu_gather.cpp) against its reference, the Python loop of cpu_step.py.

Both decide which tensors of a param group the C kernels step. On a group full of odd tensors they must hand
the very same tensors to the reference rule, step after step, and leave bit-identical parameters and state.
Also: its build is optional (a missing compiler falls back to the Python loop), started only by a large group,
and its errors name the culprit. The kernel tests (test_fused_cpu*.py, test_mixed_precision.py,
test_amp_grad_scaler.py) run under both gatherers through the ``gatherer`` fixture of conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import descentlab
import descentlab.fused as fused_package
from descentlab.fused import cpu_build, cpu_step

HAVE_CXX = bool(os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++"))
pytestmark = [pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler"),
              pytest.mark.filterwarnings("error:descentlab. CPU fused kernels unavailable"),
              pytest.mark.filterwarnings("ignore:.*a parameter moved to torch.float32")]


class Marked(torch.nn.Parameter):
    """A Parameter subclass: its data_ptr is its memory, but a subclass is never fused."""


class Wrapped(torch.Tensor):
    pass


def _odd_group(seed: int):
    """A param group with every kind of tensor the gatherers must sort out, and a function that gives them
    gradients (the same for the same seed and step), including odd gradients."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    tied = torch.nn.Parameter(rand(30))
    buffer = rand(50)
    params = {
        "f32": torch.nn.Parameter(rand(70_001)),
        "f64": torch.nn.Parameter(rand(3, 5, dtype=torch.float64)),
        "scalar": torch.nn.Parameter(rand(())),
        "non_contiguous": torch.nn.Parameter(rand(5, 4).t()),
        "bf16_own_state": torch.nn.Parameter(rand(8).to(torch.bfloat16)),
        "complex": torch.nn.Parameter(rand(6, dtype=torch.complex64)),
        "no_grad": torch.nn.Parameter(rand(7)),
        "grad_non_contiguous": torch.nn.Parameter(rand(4, 5)),
        "grad_zero_tensor": torch.nn.Parameter(rand(9)),
        "grad_negated_view": torch.nn.Parameter(rand(9)),
        "grad_is_param": torch.nn.Parameter(rand(9)),
        "grad_subclass": torch.nn.Parameter(rand(9)),
        "tied_a": tied,
        "tied_b": torch.nn.Parameter(tied.data),
        "overlap_a": torch.nn.Parameter(buffer[:30]),  # two views of one buffer, 10 elements in common
        "overlap_b": torch.nn.Parameter(buffer[20:]),
        "subclass": Marked(rand(11)),
        "empty": torch.nn.Parameter(rand(0)),
        "later_state_wrong_dtype": torch.nn.Parameter(rand(12)),
        "later_state_replaced": torch.nn.Parameter(rand(12)),
        "f32_small": torch.nn.Parameter(rand(3)),
    }

    def give_grads(step: int) -> None:
        g = torch.Generator().manual_seed(seed * 100 + step)
        for name, p in params.items():
            if name == "no_grad":
                p.grad = None
                continue
            grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if name == "grad_non_contiguous":
                grad = torch.randn(5, 4, generator=g).t()
            elif name == "grad_zero_tensor":
                grad = torch._efficientzerotensor(p.shape)
            elif name == "grad_negated_view":
                grad = torch._neg_view(grad)
            elif name == "grad_is_param":
                grad = p.detach()
            elif name == "grad_subclass":
                grad = grad.as_subclass(Wrapped)
            p.grad = grad

    return params, give_grads


def _tamper(opt: torch.optim.Optimizer, params: dict, step: int) -> None:
    """After a few steps, break some state the way users and checkpoints do."""
    if step != 3:
        return
    for name, change in (("later_state_wrong_dtype", lambda t: t.double()), ("later_state_replaced", torch.clone)):
        state = opt.state[params[name]]
        for key, value in list(state.items()):
            if torch.is_tensor(value) and value.dim() > 0:
                state[key] = change(value)


RULES = [
    (descentlab.SGD, dict(lr=0.1)),
    (descentlab.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (descentlab.Momentum, dict(lr=0.1, bias_correction=True)),
    (descentlab.Adagrad, dict(lr=0.1)),
    (descentlab.Adadelta, dict()),
    (descentlab.RMSprop, dict(centered=True, momentum=0.5)),
    (descentlab.Adam, dict(lr=0.01, amsgrad=True)),
    (descentlab.AdamW, dict(lr=0.01, state_dtype=torch.float32)),
    (descentlab.NAdam, dict(lr=0.01)),
    (descentlab.ASGD, dict(lr=0.05, lambd=0.3, t0=2)),  # two extra 0-d entries (eta, mu) beside the step
    (descentlab.Lion, dict(lr=0.01, weight_decay=0.1)),
    (descentlab.ScheduleFreeSGD, dict(lr=0.1, weight_decay=0.01)),
    (descentlab.ScheduleFreeAdamW, dict(lr=0.01, warmup_steps=2, weight_decay=0.01)),  # a ZeroTensor gradient too
]


def _run(gather: str, cls, opts, monkeypatch, steps: int = 6):
    """Step the odd group ``steps`` times with one gatherer; return the names sent to the reference rule at
    each step, the final parameters and state."""
    monkeypatch.setattr(cpu_step, "GATHER", gather)
    params, give_grads = _odd_group(seed=7)
    names = {id(p): name for name, p in params.items()}
    opt = cls(list(params.values()), impl="fused", **opts)
    sent: list[list[str]] = []
    real = fused_package.fused_cpu_step

    def recording(optimizer, group, plan, grad_inv_scale=0.0):
        rest = real(optimizer, group, plan, grad_inv_scale)
        sent.append([names[id(p)] for p in rest])
        return rest

    monkeypatch.setattr(fused_package, "fused_cpu_step", recording)
    for step in range(1, steps + 1):
        give_grads(step)
        opt.step()
        _tamper(opt, params, step)
    monkeypatch.setattr(fused_package, "fused_cpu_step", real)
    state = {names[id(p)]: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
             for p, s in opt.state.items()}
    return sent, {name: p.detach().clone() for name, p in params.items()}, state, cpu_step.fused_tensor_count(opt)


@pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler: the native gatherer cannot be built here")
@pytest.mark.parametrize("cls, opts", RULES, ids=lambda v: getattr(v, "__name__", None) or ",".join(v) or "defaults")
def test_native_gatherer_takes_the_same_tensors_and_gives_the_same_bits(cls, opts, monkeypatch):
    assert cpu_build.gather_module(wait=True) is not None, cpu_build.gather_unavailable_reason()
    sent_py, params_py, state_py, count_py = _run("python", cls, opts, monkeypatch)
    sent_native, params_native, state_native, count_native = _run("native", cls, opts, monkeypatch)
    assert sent_native == sent_py
    assert count_native == count_py and count_py >= 3  # f32, f64, scalar, … really went to the kernels
    always_reference = {"non_contiguous", "complex", "grad_non_contiguous", "grad_zero_tensor",
                        "grad_negated_view", "grad_is_param", "grad_subclass", "tied_a", "tied_b", "subclass",
                        "empty", "overlap_a", "overlap_b"}
    assert always_reference <= set(sent_py[-1]), sorted(always_reference - set(sent_py[-1]))
    assert not {"f32", "f64", "scalar", "f32_small", "no_grad"} & set(sent_py[-1])
    stateful = bool(state_py.get("f32"))
    # the step after _tamper: a float64 buffer on a float32 parameter goes to the reference rule (which moves it
    # back to float32, with a warning); a replaced buffer of the right kind is re-checked and fused
    assert ("later_state_wrong_dtype" in sent_py[3]) == stateful
    assert "later_state_replaced" not in sent_py[3] and "later_state_wrong_dtype" not in sent_py[4]
    for name, value in params_py.items():
        assert torch.equal(params_native[name], value), name
    assert state_native.keys() == state_py.keys()
    for name, entries in state_py.items():
        for key, value in entries.items():
            assert torch.equal(torch.as_tensor(state_native[name][key]), torch.as_tensor(value)), (name, key)


@pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler: the native gatherer cannot be built here")
def test_native_gatherer_bumps_versions_and_keeps_autograd_honest(monkeypatch):
    """A step between forward and backward must still be caught by autograd's saved-tensor check."""
    assert cpu_build.gather_module(wait=True) is not None
    monkeypatch.setattr(cpu_step, "GATHER", "native")
    w = torch.nn.Parameter(torch.randn(5))
    opt = descentlab.Adam([w], lr=0.1, impl="fused")
    w.grad = torch.ones(5)
    opt.step()  # creates the state (reference rule)
    loss = (w * w).sum()
    w.grad = torch.ones(5)
    before = w._version
    opt.step()
    assert cpu_step.fused_tensor_count(opt) == 1 and w._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.slow
def test_small_groups_do_not_start_the_build_and_a_large_one_does(tmp_path):
    """A model of a few tensors never pays for the C++ compiler; the first group of at least
    NATIVE_GATHER_MIN_TENSORS tensors starts it in the background, and the step itself does not wait."""
    script = textwrap.dedent("""
        import torch, descentlab
        from descentlab.fused import cpu_build, cpu_step
        small = [torch.nn.Parameter(torch.ones(3)) for _ in range(cpu_step.NATIVE_GATHER_MIN_TENSORS - 1)]
        opt = descentlab.SGD(small, lr=0.1, impl="fused")
        for p in small: p.grad = torch.ones(3)
        opt.step()
        assert cpu_build._gather_thread is None, "a small group started the build"
        assert cpu_step.fused_tensor_count(opt) == len(small)
        large = [torch.nn.Parameter(torch.ones(3)) for _ in range(cpu_step.NATIVE_GATHER_MIN_TENSORS)]
        opt = descentlab.SGD(large, lr=0.1, impl="fused")
        for p in large: p.grad = torch.ones(3)
        opt.step()
        assert cpu_build._gather_thread is not None, "a large group did not start the build"
        assert cpu_step.fused_tensor_count(opt) == len(large)  # stepped by the Python loop meanwhile
        print("built", cpu_build.gather_module(wait=True) is not None, cpu_build.gather_unavailable_reason())
    """)
    env = {**os.environ, "DESCENTLAB_KERNEL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    if HAVE_CXX:
        assert "built True None" in result.stdout, result.stdout
        assert list((tmp_path / "cache").glob("_descentlab_gather_*.so"))
        assert not list((tmp_path / "cache").glob("*.tmp.so"))
        # a later process finds it built: even a small model uses it from its first fused step, no thread started
        again = textwrap.dedent("""
            import torch, descentlab
            from descentlab.fused import cpu_build, cpu_step
            small = [torch.nn.Parameter(torch.ones(3)) for _ in range(2)]
            opt = descentlab.Adam(small, lr=0.1, impl="fused")
            for _ in range(2):
                for p in small: p.grad = torch.ones(3)
                opt.step()
            assert cpu_build._gather_thread is None and cpu_build._gather_loaded is not None
            assert cpu_step.fused_tensor_count(opt) == 2
            print("reused")
        """)
        result = subprocess.run([sys.executable, "-c", again], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0 and "reused" in result.stdout, result.stderr


def test_without_a_cxx_compiler_the_python_loop_steps(monkeypatch, tmp_path):
    """A missing C++ compiler is no error: the Python loop gathers, with the same results, and the reason is
    kept for who asks."""
    monkeypatch.setenv("CXX", "no-such-compiler-descentlab")
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    for name in ("_gather_loaded", "_gather_failed", "_gather_thread", "_gather_built"):
        monkeypatch.setattr(cpu_build, name, None)
    monkeypatch.setattr(cpu_build, "_gather_probed", False)
    monkeypatch.setattr(cpu_build, "_loaded", cpu_build.library())  # the C kernels themselves stay loaded
    monkeypatch.setattr(cpu_step, "GATHER", "native")
    ps = [torch.nn.Parameter(torch.ones(4)) for _ in range(3)]
    opt = descentlab.SGD(ps, lr=0.5, impl="fused")
    for p in ps:
        p.grad = torch.ones(4)
    opt.step()
    assert all(torch.equal(p.detach(), torch.full((4,), 0.5)) for p in ps)
    assert cpu_step.fused_tensor_count(opt) == 3
    assert "no-such-compiler-descentlab" in cpu_build.gather_unavailable_reason()
    assert cpu_build.gather_module() is None


def test_a_bad_gather_mode_names_the_choices(monkeypatch):
    monkeypatch.setattr(cpu_step, "GATHER", "fast")
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"GATHER must be one of \('auto', 'native', 'python'\), not 'fast'"):
        descentlab.SGD([p], lr=0.1, impl="fused").step()


@pytest.mark.usefixtures("gatherer")
def test_partly_overlapping_memory_goes_to_the_reference_rule():
    """Views of one buffer that overlap in part, and a gradient that is an offset view of its own parameter:
    the kernel would race on that memory; both gatherers hand them to the reference rule, which steps one
    parameter after the other (or raises torch's overlap error), so the fused result is the reference's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    results = {}
    for impl in ("fused", "reference"):
        buffer = torch.zeros(150_000)
        a = torch.nn.Parameter(buffer[:100_000])
        b = torch.nn.Parameter(buffer[50_000:])
        c = torch.nn.Parameter(torch.zeros(60_000))  # independent: still fused
        opt = descentlab.Adam([a, b, c], lr=0.1, impl=impl)
        for step in range(3):
            a.grad, b.grad, c.grad = torch.ones(100_000), torch.full((100_000,), -2.0), torch.ones(60_000)
            opt.step()
        results[impl] = (buffer.clone(), c.detach().clone(), cpu_step.fused_tensor_count(opt))
    assert torch.equal(results["fused"][0], results["reference"][0])
    assert torch.equal(results["fused"][1], results["reference"][1])
    assert results["fused"][2] == 1  # c alone

    for impl in ("fused", "reference"):
        storage = torch.zeros(200)
        p = torch.nn.Parameter(storage[:100])
        opt = descentlab.SGD([p], lr=0.1, impl=impl)
        p.grad = storage[50:150]  # overlaps the parameter's second half
        with pytest.raises(RuntimeError, match="single memory location"):
            opt.step()
    torch.set_num_threads(threads)


def test_the_python_overlap_check_works_without_numpy(monkeypatch):
    """numpy is optional for torch: the Python loop's quick overlap test then sorts plain lists."""
    monkeypatch.setattr(cpu_step, "GATHER", "python")
    monkeypatch.setattr(cpu_step, "np", None)
    buffer = torch.zeros(150)
    a, b = torch.nn.Parameter(buffer[:100]), torch.nn.Parameter(buffer[50:])
    c, d = torch.nn.Parameter(torch.zeros(60)), torch.nn.Parameter(torch.zeros(70))
    opt = descentlab.SGD([a, b, c, d], lr=1.0, momentum=0.5, impl="fused")
    for _ in range(2):
        for p in (a, b, c, d):
            p.grad = torch.ones(p.shape)
        opt.step()
    assert cpu_step.fused_tensor_count(opt) == 2  # c and d; a and b overlap
    assert torch.equal(buffer[:50], torch.full((50,), -2.5)) and torch.equal(buffer[50:100], torch.full((50,), -5.0))


def _outcome(step):
    try:
        step()
    except Exception as err:  # noqa: BLE001 - the outcome compared is whatever the step does
        return f"{type(err).__name__}: {err}"
    return "ok"


@pytest.mark.usefixtures("gatherer")
@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "sparse_grad", "meta"])
def test_tensors_without_plain_storage_get_the_reference_rules_answer(kind):
    """A sparse or meta parameter, or a sparse gradient, must get exactly what the reference rule does with it
    (torch's sparse error, …) — the Python loop used to fail first, reading a data pointer that does not exist."""
    outcomes = {}
    for impl in ("fused", "reference"):
        dense = torch.nn.Parameter(torch.ones(6))
        if kind == "sparse_coo":
            odd = torch.nn.Parameter(torch.eye(4).to_sparse())
            odd.grad = torch.eye(4).to_sparse()
        elif kind == "sparse_csr":
            odd = torch.nn.Parameter(torch.eye(4).to_sparse_csr())
            odd.grad = torch.eye(4).to_sparse_csr()
        elif kind == "sparse_grad":
            odd = torch.nn.Parameter(torch.ones(4, 4))
            odd.grad = torch.eye(4).to_sparse()
        else:
            odd = torch.nn.Parameter(torch.empty(5, device="meta"))
            odd.grad = torch.empty(5, device="meta")
        dense.grad = torch.ones(6)
        opt = descentlab.SGD([dense, odd], lr=0.1, momentum=0.9, impl=impl)
        outcomes[impl] = [_outcome(opt.step) for _ in range(2)], dense.detach().clone()
    assert outcomes["fused"][0] == outcomes["reference"][0]
    assert torch.equal(outcomes["fused"][1], outcomes["reference"][1])
