"""Review of the CPU fused path (descentlab/fused/cpu_step.py, cpu_kernels.h): each test pins a bug found
by an adversarial review — a crash, a wrong number or a silent divergence from the reference rule — and
the fused path is held to the same standard as tests/test_fused_cpu.py (torch.testing's default float32
tolerance, 1e-13 for float64, bit for bit where the kernel is exact)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import descentlab
from descentlab.fused import cpu_build, cpu_step

TOL = {torch.float32: dict(rtol=1.3e-6, atol=1e-5), torch.float64: dict(rtol=1e-13, atol=1e-13)}
pytestmark = [pytest.mark.filterwarnings("error:descentlab. CPU fused kernels unavailable"),
              pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                 reason="no C compiler: the C kernels cannot be built here"),
              pytest.mark.usefixtures("gatherer")]


def _fused_count(opt) -> int:
    return cpu_step.fused_tensor_count(opt)


@pytest.mark.parametrize("form", ["sum", "ema"])
def test_momentum_switched_on_after_stateless_fused_steps(form):
    """Plain SGD keeps no state, so its fused steps leave ``optimizer.state`` without an entry; switching
    momentum on then has to start a buffer (the reference rule's ``first_step``), not reuse the stateless
    cache entry (it raised StopIteration from the pointer columns)."""
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(10, generator=gen))
    q = torch.nn.Parameter(p.detach().clone())
    of = descentlab.SGD([p], lr=0.1, momentum_form=form, impl="fused")
    orf = descentlab.SGD([q], lr=0.1, momentum_form=form, impl="reference")
    for step in range(4):
        if step == 2:
            of.param_groups[0]["momentum"] = orf.param_groups[0]["momentum"] = 0.9
        g = torch.randn(10, generator=gen)
        p.grad, q.grad = g, g.clone()
        of.step()
        orf.step()
        assert torch.equal(p, q), f"step {step}"
    assert torch.equal(of.state[p]["momentum_buffer"], orf.state[q]["momentum_buffer"])
    assert _fused_count(of) == 1


@pytest.mark.parametrize("cls, opts", [(descentlab.SGD, dict(lr=0.1)), (descentlab.Adam, dict(lr=0.01))],
                         ids=["SGD", "Adam"])
def test_fused_step_bumps_version_counters(cls, opts):
    """The kernels write through raw pointers; torch must still learn that the parameter changed in place, or
    a backward through a graph that saved the old weights silently uses the new ones (the reference path's
    ``add_`` makes autograd raise). The state's counters are left alone (graphs do not save optimizer state,
    and bumping them cost ≈ 1 µs per Adam tensor on 2 000 small tensors)."""
    p = torch.nn.Parameter(torch.randn(6))
    opt = cls([p], impl="fused", **opts)
    p.grad = torch.randn(6)
    opt.step()  # Adam: the state is created here, by the reference rule
    loss = (p ** 3).sum()  # saves p for backward
    loss.backward(retain_graph=True)
    before = p._version
    opt.step()
    assert _fused_count(opt) == 1
    assert p._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_negated_views_are_read_with_their_sign():
    """A tensor with torch's negative bit (``torch._neg_view``) stores −x: its raw memory is not its value.
    As a gradient the kernel stepped uphill; as a parameter it wrote the raw memory."""
    for make_param, make_grad in ((lambda: torch.ones(5), lambda: torch._neg_view(torch.full((5,), 2.0))),
                                  (lambda: torch._neg_view(torch.ones(5)), lambda: torch.full((5,), 2.0))):
        p, q = torch.nn.Parameter(make_param()), torch.nn.Parameter(make_param())
        of = descentlab.SGD([p], lr=0.5, impl="fused")
        orf = descentlab.SGD([q], lr=0.5, impl="reference")
        for _ in range(2):
            p.grad, q.grad = make_grad(), make_grad()
            of.step()
            orf.step()
        assert torch.equal(p.detach(), q.detach()), (p, q)


def test_zero_tensors_never_reach_the_kernel():
    """``torch._efficientzerotensor`` has no memory (``data_ptr() == 0``): as a gradient the kernel read
    address 0 (SIGSEGV); the reference rule steps it as zeros, or refuses to write into one."""
    script = textwrap.dedent("""
        import torch, descentlab
        results = []
        for impl in ("reference", "fused"):
            p = torch.nn.Parameter(torch.ones(5))
            opt = descentlab.Adam([p], lr=0.1, impl=impl)
            p.grad = torch.ones(5)
            opt.step()
            p.grad = torch._efficientzerotensor(5)
            opt.step()
            results.append(p.detach().clone())
        assert torch.equal(results[0], results[1]), results
        for impl in ("reference", "fused"):
            z = torch.nn.Parameter(torch._efficientzerotensor(5))
            opt = descentlab.SGD([z], lr=0.1, impl=impl)
            z.grad = torch.ones(5)
            try:
                opt.step()
            except RuntimeError as err:
                results.append(type(err).__name__)
        assert results[2:] == ["RuntimeError", "RuntimeError"], results
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONFAULTHANDLER="1"))
    assert out.returncode == 0 and "OK" in out.stdout, (out.returncode, out.stderr[-2000:])


def test_parameter_reinterpreted_at_the_same_address_is_rechecked():
    """``param.data = …`` with the same address and size but another dtype or layout: the cached check must
    not be reused (the float64 kernel read float32 memory, past the end of the float32 gradient; a
    transposed parameter was stepped in memory order against a gradient in logical order)."""
    def run(impl, change):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(4, 4))
        opt = descentlab.SGD([p], lr=0.1, momentum=0.9, impl=impl)
        gen = torch.Generator().manual_seed(0)
        for step in range(4):
            if step == 2:
                address = p.data_ptr()
                change(p)
                assert p.data_ptr() == address and p.numel() == 16
            p.grad = torch.randn(4, 4, generator=gen, dtype=torch.float64).to(p.dtype)
            opt.step()
        return p.detach().clone(), opt

    def as_float32(p):  # same address, same numel: the first half of the float64 storage as float32
        p.data = p.data.view(-1).view(torch.float32)[:16].view(4, 4)
        p.data.copy_(torch.linspace(-1, 1, 16).reshape(4, 4))

    def transposed(p):
        p.data = p.data.t()

    with pytest.warns(UserWarning, match="moved to torch.float32"):
        expected, _ = run("reference", as_float32)
    with pytest.warns(UserWarning, match="moved to torch.float32"):
        got, _ = run("fused", as_float32)
    torch.testing.assert_close(got, expected, **TOL[torch.float32])
    expected, _ = run("reference", transposed)
    got, _ = run("fused", transposed)
    torch.testing.assert_close(got, expected, **TOL[torch.float64])


def test_state_dtype_changed_between_steps_is_honoured():
    """``state_dtype`` switched from float32 back to None for bf16 parameters: the reference path moves the
    state to bf16 (with its warning) and steps in bf16; the cached check kept the float32 kernel."""
    results = []
    for impl in ("reference", "fused"):
        gen = torch.Generator().manual_seed(1)
        p = torch.nn.Parameter(torch.randn(64, generator=gen).to(torch.bfloat16))
        opt = descentlab.Adam([p], lr=0.01, impl=impl, state_dtype=torch.float32)
        for step in range(5):
            if step == 2:
                opt.param_groups[0]["state_dtype"] = None
            p.grad = torch.randn(64, generator=gen).to(torch.bfloat16)
            if step == 2:
                with pytest.warns(UserWarning, match="moved to torch.bfloat16"):
                    opt.step()
            else:
                opt.step()
        results.append((p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}))
    (p, state), (q, fused_state) = results
    assert torch.equal(p, q)
    assert {k: v.dtype for k, v in state.items()} == {k: v.dtype for k, v in fused_state.items()}
    assert all(torch.equal(state[k], fused_state[k]) for k in state)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls, opts", [(descentlab.SGD, dict(lr=0.1, momentum=0.9)), (descentlab.Adam, dict(lr=0.01))],
                         ids=["SGD", "Adam"])
def test_grad_scaler_unscaled_low_precision_gradient_is_the_one_stepped(cls, opts, dtype):
    """With bf16 / fp16 gradients the unscaled gradient is rounded to their dtype (``GradScaler.unscale_``,
    the reference path's ``grad.mul_``, and the kernel's own write-back); the kernel stepped with the
    unrounded float32 product instead, so its float32 state drifted from the reference's."""
    results = []
    for impl in ("reference", "fused"):
        gen = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.randn(257, generator=gen).to(dtype))
        opt = cls([w], impl=impl, state_dtype=torch.float32, **opts)
        scaler = torch.amp.GradScaler("cpu", init_scale=3.0)  # not a power of two: unscaling rounds
        for _ in range(4):
            opt.zero_grad()
            scaler.scale((w.float() * torch.randn(257, generator=gen)).sum()).backward()
            scaler.step(opt)
            scaler.update()
        results.append((w.detach().clone(), w.grad.clone(), {k: v.clone() for k, v in opt.state[w].items()}))
        if impl == "fused":
            assert _fused_count(opt) == 1
    (p, g, state), (q, h, fused_state) = results
    assert torch.equal(g, h)  # the gradients left behind agree
    torch.testing.assert_close(q, p)
    for key, value in state.items():
        torch.testing.assert_close(fused_state[key], value, **TOL[torch.float32], msg=lambda m: f"{key}: {m}")


def test_parameters_sharing_memory_are_stepped_one_after_the_other():
    """Two Parameters over the same memory (weights tied through ``.data``, or ``Parameter(other.data)``): the
    reference rule steps one, then the other, from the updated values; the kernel split them across threads
    and both read the old values, so one update was lost (elements ended at −1 instead of −3)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for impl in ("fused", "reference"):
            for _ in range(3):
                a = torch.nn.Parameter(torch.zeros(200_000))
                b = torch.nn.Parameter(a.data)
                c = torch.nn.Parameter(torch.zeros(50_000))  # an independent tensor keeps the kernel busy
                opt = descentlab.SGD([a, c, b], lr=1.0, impl=impl)
                a.grad, b.grad, c.grad = torch.ones(200_000), torch.full((200_000,), 2.0), torch.ones(50_000)
                opt.step()
                assert torch.equal(a.detach(), torch.full((200_000,), -3.0)), impl
                assert torch.equal(c.detach(), torch.full((50_000,), -1.0)), impl
                if impl == "fused":
                    assert cpu_step.fused_tensor_count(opt) == 1  # c; a and b took the reference rule
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_wide_nadam_state_keeps_its_float32_mu_product_through_state_dict(impl):
    """torch's ``load_state_dict`` casts every floating state entry but ``step`` to the parameter's dtype; for
    bf16 parameters with ``state_dtype=torch.float32`` the arrays were put back in float32, NAdam's 0-d Π
    was left in bf16: the run drifted from an uninterrupted one and the fused path refused the parameter
    for the rest of training."""
    import copy

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(300, generator=gen).to(torch.bfloat16)
    grads = [torch.randn(300, generator=gen).to(torch.bfloat16) for _ in range(8)]
    w, v = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    straight = descentlab.NAdam([w], lr=0.01, state_dtype=torch.float32, impl=impl)
    resumed = descentlab.NAdam([v], lr=0.01, state_dtype=torch.float32, impl=impl)
    for step, g in enumerate(grads):
        if step == 3:
            saved = copy.deepcopy(resumed.state_dict())
            resumed = descentlab.NAdam([v], lr=0.01, state_dtype=torch.float32, impl=impl)
            resumed.load_state_dict(saved)
            assert {k: t.dtype for k, t in resumed.state[v].items()} == \
                {k: t.dtype for k, t in straight.state[w].items()}
        w.grad, v.grad = g.clone(), g.clone()
        straight.step()
        resumed.step()
    assert torch.equal(w, v)
    assert all(torch.equal(t, resumed.state[v][k]) for k, t in straight.state[w].items())
    assert _fused_count(resumed) == (1 if impl == "fused" else 0)


def test_temp_dir_fallback_never_loads_from_a_folder_others_control(tmp_path, monkeypatch):
    """With the cache folder unwritable the library goes to ``$TMP/descentlab-kernels-<uid>``; that name is
    predictable, so in a shared temp dir anyone could create the folder first and leave a library there,
    which ``build()`` returned to be loaded (code execution as this user). A folder that is not this
    user's own, or that others can write into, is refused."""
    import stat

    from descentlab.fused import cpu_build

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be")
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(blocker / "kernels"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    name = cpu_build._library_path(cpu_build._compiler()).name
    planted = tmp_path / "tmp" / f"descentlab-kernels-{os.getuid()}" / name
    planted.parent.mkdir()
    planted.write_bytes(b"someone else's code")
    planted.parent.chmod(0o777)  # as a folder made by another user for everyone would be
    with pytest.raises(RuntimeError, match="not a private folder"):
        cpu_build.build()
    planted.parent.chmod(0o700)
    if os.geteuid() == 0:  # root can also play the other user: a private folder, but not this user's
        os.chown(planted.parent, 65534, 65534)
        with pytest.raises(RuntimeError, match="not a private folder"):
            cpu_build.build()
        os.chown(planted.parent, 0, 0)
    # this user's own private folder: used as before
    assert cpu_build.build() == planted
    assert stat.S_IMODE(planted.parent.stat().st_mode) == 0o700


def test_a_copied_optimizer_still_counts_skipped_steps():
    """torch's ``Optimizer.__getstate__`` keeps defaults, state and param_groups only: a deep-copied (or
    pickled) optimizer lost ``skipped_steps`` and its next ``nonfinite="skip"`` step raised AttributeError.
    The copy keeps the count and, like the original, no fused cache (the copy has other parameters)."""
    import copy

    p = torch.nn.Parameter(torch.randn(4))
    opt = descentlab.Adam([p], lr=0.1, nonfinite="skip")
    p.grad = torch.full((4,), float("nan"))
    opt.step()
    p.grad = torch.ones(4)
    opt.step()
    opt.step()
    twin = copy.deepcopy(opt)
    assert twin.skipped_steps == 1 and not hasattr(twin, "_descentlab_fused_cache")
    q = twin.param_groups[0]["params"][0]
    q.grad = torch.full((4,), float("nan"))
    twin.step()
    assert twin.skipped_steps == 2 and opt.skipped_steps == 1
    q.grad = torch.ones(4)
    twin.step()
    opt.step()
    assert torch.equal(p, q) and _fused_count(twin) == 1


@pytest.mark.slow
def test_a_compiler_command_with_arguments_is_accepted(tmp_path, monkeypatch):
    """``CC="ccache gcc"`` is a common setting: the command is split as a shell would; only its program must
    exist (here ``env cc``, as ccache may not be installed). A wrong program is still named in the error."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    monkeypatch.setenv("DESCENTLAB_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", f"env {compiler}")
    built = cpu_build.build()
    assert built.exists() and built.parent == tmp_path
    monkeypatch.setenv("CC", "no-such-ccache gcc")
    with pytest.raises(RuntimeError, match=r"\$CC='no-such-ccache gcc' is not an executable compiler"):
        cpu_build.build()


def test_amsgrad_keeps_a_nan_running_max_as_torch_maximum_does():
    """A NaN already in ``max_exp_avg_sq`` (a loaded state) must stay NaN, and spoil those parameters, as
    ``torch.maximum`` makes it in the reference rule; ``x > v ? x : v`` used to drop it silently."""
    gen = torch.Generator().manual_seed(3)
    fused = [torch.nn.Parameter(torch.randn(70_001, generator=gen)) for _ in range(2)]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    of = descentlab.Adam(fused, lr=0.01, amsgrad=True, impl="fused")
    orf = descentlab.Adam(ref, lr=0.01, amsgrad=True, impl="reference")
    for step in range(3):
        for p, q in zip(fused, ref):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        of.step()
        orf.step()
        if step == 0:
            for opt, params in ((of, fused), (orf, ref)):
                opt.state[params[1]]["max_exp_avg_sq"][[0, 5, 70_000]] = float("nan")
    assert cpu_step.fused_tensor_count(of) == 2
    for p, q in zip(fused, ref):
        assert torch.equal(p.isnan(), q.isnan())
        torch.testing.assert_close(p, q, **TOL[torch.float32], equal_nan=True)
        torch.testing.assert_close(of.state[p]["max_exp_avg_sq"], orf.state[q]["max_exp_avg_sq"],
                                   **TOL[torch.float32], equal_nan=True)
    assert fused[1].isnan().sum() == 3 and not fused[0].isnan().any()


def test_float64_nadam_resumed_from_torch_state_keeps_the_kernel():
    """torch's loader casts NAdam's Π (``mu_product``) to a float64 parameter's dtype and keeps ``step`` float32;
    the kernel used to take one dtype for both counters, so such a parameter fell back to the reference rule
    for the rest of training. Now it is fused, and equal to the reference rule from the same state."""
    gen = torch.Generator().manual_seed(5)
    start = torch.randn(70_001, generator=gen, dtype=torch.float64)
    grads = [torch.randn(70_001, generator=gen, dtype=torch.float64) for _ in range(6)]
    t_param = torch.nn.Parameter(start.clone())
    theirs = torch.optim.NAdam([t_param], lr=0.01)
    for g in grads[:3]:
        t_param.grad = g.clone()
        theirs.step()
    runs = {}
    for impl in ("fused", "reference"):
        w = torch.nn.Parameter(t_param.detach().clone())
        opt = descentlab.NAdam([w], lr=0.01, impl=impl)
        opt.load_state_dict(copy.deepcopy(theirs.state_dict()))  # the loader keeps same-dtype tensors: copy
        assert (opt.state[w]["step"].dtype, opt.state[w]["mu_product"].dtype) == (torch.float32, torch.float64)
        for g in grads[3:]:
            w.grad = g.clone()
            opt.step()
        runs[impl] = (w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}, _fused_count(opt))
    assert runs["fused"][2] == 1 and runs["reference"][2] == 0
    torch.testing.assert_close(runs["fused"][0], runs["reference"][0], rtol=1e-13, atol=1e-13)
    for key, value in runs["reference"][1].items():
        assert runs["fused"][1][key].dtype == value.dtype, key
        torch.testing.assert_close(runs["fused"][1][key], value, rtol=1e-13, atol=1e-13)
