"""The paths a CUDA tensor takes (docs/speed.md): the multi-tensor path, torch's own fused kernels for torch's
conventions under ``impl="auto"``, and ``capturable=True`` inside a captured CUDA graph. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import descentlab
from descentlab.optim import REGISTRY
from helpers import FUSED_TOL, torch_twin

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = "cuda"
VARIANTS = [(name, variant) for name, spec in REGISTRY.items() if not spec.requires for variant in spec.variants]
SHAPES = [(5, 3), (3,), (), (7,), (1000,)]
FUSED_OPS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_")


class Ops(TorchDispatchMode):
    """Counts torch's fused optimizer kernels and the host reads (``_local_scalar_dense``) a step dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.fused: dict[str, int] = {}
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in FUSED_OPS:
            self.fused[name] = self.fused.get(name, 0) + 1
        if func is torch.ops.aten._local_scalar_dense.default:
            self.host_reads += 1
        return func(*args, **(kwargs or {}))


def _params(dtype=torch.float32, shapes=SHAPES):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen, dtype=dtype).to(CUDA) for s in shapes]


def _step_all(pairs, steps, ops=None):
    """The same gradients for each (params, optimizer) pair, ``steps`` times; ``ops`` watches the first pair."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(CUDA) for p in pairs[0][0]]
        for params, opt in pairs:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            if ops is not None and params is pairs[0][0]:
                with ops:
                    opt.step()
            else:
                opt.step()


@pytest.mark.parametrize("name, variant", VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
def test_foreach_equals_the_reference_on_cuda(name, variant):
    spec, opts = REGISTRY[name], REGISTRY[name].variants[variant]
    init = _params()
    a, b = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    fe, ref = spec.build(a, impl="foreach", **opts), spec.build(b, impl="reference", **opts)
    _step_all([(a, fe), (b, ref)], steps=6)
    for i, (p, q) in enumerate(zip(a, b)):
        torch.testing.assert_close(p, q, **FUSED_TOL[torch.float32], msg=lambda m: f"{name}/{variant} param {i}: {m}")


TORCH_CONVENTIONS = [("adam", {}, "_fused_adam_"), ("adam", {"amsgrad": True, "weight_decay": 0.01}, "_fused_adam_"),
                     ("adamw", {}, "_fused_adamw_"), ("sgd", {}, "_fused_sgd_"),
                     ("sgd", {"momentum": 0.9, "nesterov": True}, "_fused_sgd_"),
                     ("sgd", {"momentum": 0.9, "dampening": 0.5}, "_fused_sgd_"),
                     ("adagrad", {"lr_decay": 0.01}, "_fused_adagrad_")]


@pytest.mark.parametrize("name, options, kernel", TORCH_CONVENTIONS,
                         ids=[f"{n}-{'-'.join(o) or 'plain'}" for n, o, _ in TORCH_CONVENTIONS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_auto_delegates_torch_conventions_to_torchs_fused_kernels(name, options, kernel, dtype):
    """``impl="auto"`` on CUDA: one fused call per step for the whole group, and ``torch.optim.X(fused=True)``'s
    weights and state to the bit."""
    init = _params(dtype)
    ours, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    opt = REGISTRY[name].build(ours, **options)
    twin = torch_twin(name, theirs, fused=True, **options)
    ops = Ops()
    _step_all([(ours, opt), (theirs, twin)], steps=5, ops=ops)
    assert ops.fused == {kernel: 5}
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)
        for key, value in twin.state[q].items():
            if key == "momentum_buffer" and dtype == torch.bfloat16:
                continue  # see tests/test_torch_fused.py: torch's bf16 first-step buffer is not reliable on the CPU
            assert torch.equal(opt.state[p][key].to(value.device, value.dtype), value), key
            if key == "step":
                assert opt.state[p][key].device == p.device  # fused=True's layout: the counter on the device


@pytest.mark.parametrize("options", [{"eps_placement": "inside"}, {"bias_correction": False}])
def test_auto_keeps_other_conventions_on_the_multi_tensor_path(options):
    init = _params()
    a, b = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    auto, ref = descentlab.Adam(a, **options), descentlab.Adam(b, impl="reference", **options)
    ops = Ops()
    _step_all([(a, auto), (b, ref)], steps=4, ops=ops)
    assert ops.fused == {}
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, **FUSED_TOL[torch.float32])


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "radam", "adamax", "asgd", "rmsprop", "rprop",
                                  "adadelta"])
def test_capturable_step_reads_nothing_back_on_cuda(name):
    params = [torch.nn.Parameter(t) for t in _params()]
    opt = REGISTRY[name].build(params, capturable=True)
    ops = Ops()
    _step_all([(params, opt)], steps=3, ops=ops)
    assert ops.host_reads == 0
    for p in params:
        for key, value in opt.state[p].items():
            assert value.device == p.device, key


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("options", [{}, {"amsgrad": True, "weight_decay": 0.01}], ids=["plain", "amsgrad-decay"])
def test_capturable_step_in_a_cuda_graph_equals_eager(name, options):
    """torch's recipe (docs: CUDA Graphs, whole-network capture): warm up on a side stream so the state exists, capture
    ``opt.step()`` over static gradients, replay with new gradients copied in; an eager capturable twin given the same
    gradients ends on the same weights and state, to the bit."""
    init = _params()
    graphed = [torch.nn.Parameter(t.clone()) for t in init]
    eager = [torch.nn.Parameter(t.clone()) for t in init]
    opt = REGISTRY[name].build(graphed, lr=0.01, capturable=True, **options)
    twin = REGISTRY[name].build(eager, lr=0.01, capturable=True, **options)
    gen = torch.Generator().manual_seed(2)

    def new_grads():
        return [torch.randn(p.shape, generator=gen).to(CUDA) for p in graphed]

    static = [torch.zeros_like(p) for p in graphed]
    for p, g in zip(graphed, static):
        p.grad = g
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: creates the state outside the graph
            grads = new_grads()
            for g, new, p in zip(static, grads, eager):
                g.copy_(new)
                p.grad = new.clone()
            opt.step()
            twin.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for _ in range(5):
        grads = new_grads()
        for g, new, p in zip(static, grads, eager):
            g.copy_(new)
            p.grad = new.clone()
        graph.replay()
        twin.step()
    torch.cuda.synchronize()
    for p, q in zip(graphed, eager):
        assert torch.equal(p, q)
        for key, value in twin.state[q].items():
            assert torch.equal(opt.state[p][key], value), key
    assert float(opt.state[graphed[0]]["step"]) == 8  # 3 warm-up steps + 5 replays: the counter advanced on the device


def test_load_state_dict_keeps_a_capturable_step_on_the_device():
    params = [torch.nn.Parameter(t) for t in _params()]
    opt = descentlab.Adam(params, capturable=True)
    _step_all([(params, opt)], steps=2)
    saved = {**opt.state_dict(), "state": {k: {key: v.cpu() for key, v in s.items()}
                                           for k, s in opt.state_dict()["state"].items()}}
    fresh = descentlab.Adam(params, capturable=True)
    fresh.load_state_dict(saved)
    for p in params:
        step = fresh.state[p]["step"]
        assert step.device == p.device and step.dtype == torch.float32
