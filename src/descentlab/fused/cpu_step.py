"""The CPU fused step: every eligible tensor of a param group in one call of a C kernel.

:func:`descentlab.fused.abi.kernel_call` maps a group's :class:`~descentlab.rules.plan.StepPlan` to a kernel of
``cpu_kernels.h``, the state it reads and writes, and its hyperparameters; :func:`fused_cpu_step` gathers the group's eligible tensors
(CPU, float32/float64, contiguous, dense gradient of the same dtype and shape, state already created
with the same dtype and shape), calls the kernel once per (dtype, step dtype) and returns the
tensors it did not step, which the caller steps with the reference rule. The kernel advances the
``step`` counters itself, so the Python side does no per-tensor tensor operation.

bf16 / fp16 parameters are fused when their state is float32 (``state_dtype=torch.float32``: mixed
precision, float32 arithmetic, the parameter rounded to nearest even); with state in their own dtype
they take the reference rule. Anything unusual falls back to the reference rule tensor by tensor:
complex, sparse, non-contiguous, another device, a tensor's first step (state creation is the reference rule's),
a plan whose rule has no kernel, ``differentiable``. Nothing here knows an optimizer class: a subclass of any
optimizer keeps this path as long as its plan names a rule with a kernel.

Who gathers: the checks above cost ≈ 1.3 µs a tensor in Python, more than the kernel itself on a model of
thousands of small tensors. ``cpu_gather.cpp`` makes the same decisions in C++ (≈ 0.15–0.3 µs a tensor); it is
compiled against the installed torch in a background thread the first time a group of at least
:data:`NATIVE_GATHER_MIN_TENSORS` tensors is stepped and used from then on (every group). The Python loop is
its reference and its fallback (no C++ compiler, no Python headers); tests/test_fused_cpu_gather.py and the
kernel tests run under both.
"""

from __future__ import annotations

import ctypes
from array import array
from typing import Any

import torch
from torch import Tensor

try:
    import numpy as np  # torch's optional dependency; without it the overlap test runs in pure Python
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]

from descentlab.fused.abi import KernelCall, kernel_call
from descentlab.fused.cpu_build import VARIANTS, gather_module, library
from descentlab.rules.plan import StepPlan

#: (parameter dtype, state dtype) → kernel variant; bf16 / fp16 parameters need ``state_dtype=torch.float32``.
KERNEL_VARIANTS = {(torch.float32, torch.float32): "f32", (torch.float64, torch.float64): "f64",
                   (torch.bfloat16, torch.float32): "bf16f32", (torch.float16, torch.float32): "f16f32"}
PARAM_DTYPES = {param for param, _ in KERNEL_VARIANTS}
_PLAIN = (Tensor, torch.nn.Parameter)
STEP_DTYPES = {torch.float32: 0, torch.float64: 1}
#: Set False to keep every tensor off the C kernels (tests of the Inductor kernels use this).
ENABLED = True
#: Who decides which tensors go to the kernels: ``"auto"`` — the native gatherer (cpu_gather.cpp) once it is
#: built, its build started in the background by the first group of at least :data:`NATIVE_GATHER_MIN_TENSORS`
#: tensors (small models never pay for the compiler), the Python loop below until then; ``"native"`` — wait
#: for the build (tests, benchmarks); ``"python"`` — the Python loop only. Results are the same either way.
GATHER = "auto"
NATIVE_GATHER_MIN_TENSORS = 32
GATHER_MODES = ("auto", "native", "python")
_kernel_addresses: dict[tuple[int, str], tuple[int, ...]] = {}


class _Batch:
    """One kernel call (one element dtype and one step dtype): the parameter and gradient addresses, and per
    tensor the parameter, its gradient and its :class:`_Checked` (sizes and state pointers, turned into
    columns at call time). Holding the tensors keeps their memory alive while the call runs without the
    GIL; after it, the parameters' version counters are bumped, as torch's in-place ops do."""

    __slots__ = ("param", "grad", "owners", "grads", "checks")

    def __init__(self) -> None:
        self.param: list[int] = []
        self.grad: list[int] = []
        self.owners: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.checks: list[_Checked] = []


class _Checked:
    """A parameter whose state passed the full check: the state dict and tensors it was checked with
    (``keys``: the plan's state entries they stand for), and what the call needs. Reused while the same
    objects sit at the same addresses, the parameter keeps its dtype (``dtype``) and the group its
    ``state_dtype`` (``wide``), and the plan reads the same entries."""

    __slots__ = ("state", "tensors", "pointers", "numel", "key", "keys", "dtype", "wide", "starts", "ends",
                 "grad_bytes")

    def __init__(self, state: dict[str, Any] | None, tensors: tuple[Tensor, ...], param: Tensor,
                 key: tuple[str, int], keys: tuple[str, ...], wide: Any) -> None:
        self.state, self.tensors, self.numel, self.key, self.keys = state, tensors, param.numel(), key, keys
        self.dtype, self.wide = param.dtype, wide
        self.pointers = tuple(t.data_ptr() for t in tensors)
        # the bytes the parameter and its state cover (an empty tensor covers none), for the overlap check
        self.grad_bytes = self.numel * param.element_size()
        spans = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in (param, *tensors)]
        spans = [(lo, hi) for lo, hi in spans if hi > lo]
        self.starts, self.ends = tuple(lo for lo, _ in spans), tuple(hi for _, hi in spans)


def _same_layout(t: Any, param: Tensor, dtype: torch.dtype) -> bool:
    return (type(t) is Tensor and t.dtype == dtype and t.is_cpu and t.is_contiguous()
            and t.shape == param.shape and not t.is_sparse)


def _step_counter(t: Any) -> bool:
    return type(t) is Tensor and t.is_cpu and t.dim() == 0 and t.dtype in STEP_DTYPES


def _check(plan: KernelCall, param: Tensor, state: dict[str, Any] | None, group: dict[str, Any]) -> _Checked | None:
    """The full eligibility check of a parameter and its state (see the module docstring)."""
    if type(param) not in _PLAIN or type(param.data) is not Tensor:
        return None  # a tensor subclass (DTensor under FSDP2, …): its numel and data_ptr may not be its memory
    if param.dtype not in PARAM_DTYPES or not param.is_cpu or not param.is_contiguous() or param.is_sparse:
        return None
    state_dtype = param.dtype
    if group.get("state_dtype") is not None and group["state_dtype"].itemsize > param.dtype.itemsize:
        state_dtype = group["state_dtype"]  # mixed precision: the state (and the arithmetic) is wider
    if (param.dtype, state_dtype) not in KERNEL_VARIANTS:
        return None
    needs_state = plan.steps or any(plan.state_keys)
    if needs_state and not state:
        return None  # first step: the reference rule creates the state
    tensors: list[Any] = ([state[key] if key in state else None for key in plan.state_keys if key is not None]
                          if state else [])
    if not all(_same_layout(t, param, state_dtype) for t in tensors):
        return None
    step_kind = 0
    if plan.steps and state:
        step: Any = state.get("step")
        if not _step_counter(step):
            return None
        tensors.append(step)
        step_kind = STEP_DTYPES[step.dtype]
        for index, key in enumerate(plan.extra):
            extra: Any = state.get(key)
            if not _step_counter(extra):
                return None
            tensors.append(extra)
            # torch's loader makes NAdam's Π float64 beside a float32 step; ASGD's η, μ follow the default dtype
            step_kind |= (2 << index) * STEP_DTYPES[extra.dtype]
    if len({t.data_ptr() for t in tensors} | {param.data_ptr()}) != len(tensors) + 1:
        return None  # two of them share memory
    if any(t.is_neg() or t._is_zerotensor() for t in (param, *tensors)):
        return None  # their memory is not their value: a negated view (torch._neg_view), a ZeroTensor (none)
    return _Checked(state, tuple(tensors), param, (KERNEL_VARIANTS[(param.dtype, state_dtype)], step_kind),
                    _state_keys(plan), group.get("state_dtype"))


def _array(values: list[int] | tuple[int, ...], keep: list[array]) -> int | None:
    """The address of a C array of ``values`` (uint64); ``keep`` holds the buffer alive for the call."""
    if not values:
        return None
    buffer = array("Q", values)
    keep.append(buffer)
    return buffer.buffer_info()[0]


def _state_keys(plan: KernelCall) -> tuple[str, ...]:
    """The state entries a plan reads, in the order of :class:`_Checked`'s tensors."""
    keys = [key for key in plan.state_keys if key is not None]
    if plan.steps:
        keys.append("step")
        keys.extend(plan.extra)
    return tuple(keys)


def _extent(t: Tensor) -> tuple[int, int] | None:
    """The bytes a dense CPU tensor's elements lie in, ``(first, end)``, strides included; ``None`` for a tensor
    with no memory of its own to speak of (empty, not strided, not on the CPU, a ZeroTensor, a
    ``__torch_dispatch__`` subclass)."""
    if t.layout is not torch.strided or not t.is_cpu or t.numel() == 0:
        return None
    if torch._C._dispatch_keys(t).has(torch._C.DispatchKey.Python):
        return None
    first = t.data_ptr()
    if not first:
        return None
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return first, first + span * t.element_size()


def _rest_spans(rest: list[Tensor], grads_written: bool) -> list[tuple[int, int, int, bool]]:
    """``(first, end, id(param), written)`` of the memory of the parameters the reference rule will step, and
    of their gradients: a batched tensor that overlaps them must wait for the reference rule too."""
    spans = []
    for param in rest:
        for tensor, written in ((param, True), (param.grad, grads_written)):
            extent = _extent(tensor) if tensor is not None else None
            if extent is not None:
                spans.append((*extent, id(param), written))
    return spans


def _shared_memory(batches: dict[tuple[str, int], _Batch], rest: list[Tensor], grads_written: bool) -> set[int]:
    """The ids of the parameters whose tensors share memory, wholly or in part, with another tensor of the step
    that is written (weights tied through ``.data``, overlapping views of one buffer, a gradient overlapping a
    parameter — batched, or left to the reference rule): the kernel could update that memory from two threads
    at once, or before the reference rule reads it, where the reference rule steps one parameter after the
    other in group order. Same rule as cpu_gather.cpp: sort every tensor's bytes by address; a run of
    overlapping ranges that holds a written one sends all its parameters to the reference rule. Parameters
    and state are written; gradients when GradScaler unscales them in place. A quick test over sorted starts
    and ends comes first (≈ 0.2–0.35 µs a parameter)."""
    starts: list[int] = []
    ends: list[int] = []
    for batch in batches.values():
        for checked, grad_pointer in zip(batch.checks, batch.grad):
            starts += checked.starts
            ends += checked.ends
            starts.append(grad_pointer)
            ends.append(grad_pointer + checked.grad_bytes)
    if not starts:
        return set()
    others = _rest_spans(rest, grads_written)
    starts += [span[0] for span in others]
    ends += [span[1] for span in others]
    if len(starts) < 2:
        return set()
    # disjoint ranges: sorted starts never run ahead of sorted ends
    if np is not None:
        first, last = np.sort(np.array(starts, dtype=np.uint64)), np.sort(np.array(ends, dtype=np.uint64))
        if not (first[1:] < last[:-1]).any():
            return set()
    elif all(a >= b for a, b in zip(sorted(starts)[1:], sorted(ends))):
        return set()
    spans = others  # rare: something overlaps; find the runs exactly
    for batch in batches.values():
        for param, checked, grad_pointer in zip(batch.owners, batch.checks, batch.grad):
            spans += [(lo, hi, id(param), True) for lo, hi in zip(checked.starts, checked.ends)]
            spans.append((grad_pointer, grad_pointer + checked.grad_bytes, id(param), grads_written))
    spans.sort()
    found: set[int] = set()
    i = 0
    while i < len(spans):
        j, end, written = i + 1, spans[i][1], spans[i][3]
        while j < len(spans) and spans[j][0] < end:
            end, written, j = max(end, spans[j][1]), written or spans[j][3], j + 1
        if j - i >= 2 and written:
            found.update(span[2] for span in spans[i:j])
        i = j
    return found


def _drop(batch: _Batch, ids: set[int]) -> None:
    """Take the parameters whose id is in ``ids`` out of ``batch``."""
    keep = [i for i, param in enumerate(batch.owners) if id(param) not in ids]
    for name in _Batch.__slots__:
        column = getattr(batch, name)
        setattr(batch, name, [column[i] for i in keep])


def fused_tensor_count(optimizer: Any) -> int:
    """How many tensors the C kernels stepped in the latest step of each of ``optimizer``'s param groups."""
    counts = optimizer.__dict__.get("_descentlab_fused_stepped", {})
    return sum(counts.get(id(group), 0) for group in optimizer.param_groups)


def _native_gatherer(tensors: int) -> Any:
    """The native gatherer module to use for a group of ``tensors`` tensors, or ``None`` (see :data:`GATHER`)."""
    if GATHER not in GATHER_MODES:
        raise ValueError(f"descentlab.fused.cpu_step.GATHER must be one of {GATHER_MODES}, not {GATHER!r}")
    if GATHER == "python":
        return None
    return gather_module(start=tensors >= NATIVE_GATHER_MIN_TENSORS, wait=GATHER == "native")


def _addresses(lib: Any, kernel: str) -> tuple[int, ...]:
    """The addresses of ``kernel``'s variants in :data:`~descentlab.fused.cpu_build.VARIANTS` order."""
    key = (id(lib), kernel)
    found = _kernel_addresses.get(key)
    if found is None:
        found = _kernel_addresses[key] = tuple(int(ctypes.cast(getattr(lib, f"dl_{kernel}_{v}"), ctypes.c_void_p).value
                                                    or 0) for v in VARIANTS)
    return found


def fused_cpu_step(optimizer: Any, group: dict[str, Any], step_plan: StepPlan,
                   grad_inv_scale: float = 0.0) -> list[Tensor]:
    """Step every eligible tensor of ``group`` (whose step is ``step_plan``) with one kernel call per dtype,
    using the state in ``optimizer.state``; return the others
    (in group order) for the reference path. ``grad_inv_scale`` ≠ 0 (``torch.amp.GradScaler``): each
    gradient is first unscaled in place, ``g ← g · grad_inv_scale``, in the same pass.

    The checks run in the native gatherer (cpu_gather.cpp) once it is built (see :data:`GATHER`), else in the
    Python loop below, which is their reference. There a parameter's full check (:func:`_check`) is cached;
    later steps only confirm, per state entry, that the state dict still holds the same tensor at the same
    address (``state[k] is t`` and its ``data_ptr``), so a ``load_state_dict``, a moved parameter or a
    replaced buffer is re-checked.
    """
    counts = optimizer.__dict__.setdefault("_descentlab_fused_stepped", {})
    counts[id(group)] = 0
    if not ENABLED or group.get("differentiable") or group.get("capturable"):
        return list(group["params"])
    plan = kernel_call(step_plan, "fused" if group.get("impl") == "fused" else "auto")
    lib = library() if plan is not None else None
    if plan is None or lib is None:
        return list(group["params"])
    wide = group.get("state_dtype")
    stateful = plan.steps or any(plan.state_keys)
    native = _native_gatherer(len(group["params"]))
    if native is not None:
        native_rest, counts[id(group)] = native.step_group(
            group["params"], optimizer.state if stateful else None, plan.state_keys, int(plan.steps), plan.extra,
            wide, _addresses(lib, plan.kernel), plan.kernel, plan.hp, float(grad_inv_scale), torch.get_num_threads())
        return native_rest  # type: ignore[no-any-return]
    cache: dict[int, tuple[Tensor, int, _Checked]] = optimizer.__dict__.setdefault("_descentlab_fused_cache", {})
    keys = _state_keys(plan)
    # Hot loop (thousands of tensors per step): bound methods in locals, no per-tensor function calls.
    cache_get, states_get = cache.get, optimizer.state.get
    batches: dict[tuple[str, int], _Batch] = {}
    rest: list[Tensor] = []
    for param in group["params"]:
        grad = param.grad
        if grad is None:
            continue
        state = states_get(param) if stateful else None
        try:
            pointer = param.data_ptr()
        except RuntimeError:  # no storage (sparse, …): the reference rule says what it says of those
            rest.append(param)
            continue
        dtype = param.dtype
        hit = cache_get(id(param))
        checked = hit[2] if hit is not None and hit[0] is param and hit[1] == pointer else None
        # param.data = … may keep the address with another dtype or layout; keys: the plan may change
        # (a stateless plan has state None and no keys: the cached check stands as long as the parameter does)
        if (checked is not None and checked.state is state and checked.keys == keys and checked.dtype is dtype
                and checked.wide is wide and param.is_contiguous()):
            for key, tensor, address in zip(keys, checked.tensors, checked.pointers):
                if state.get(key) is not tensor or tensor.data_ptr() != address:  # type: ignore[union-attr]
                    checked = None
                    break
        else:
            checked = None
        if checked is None or param.numel() != checked.numel:
            checked = _check(plan, param, state, group)
            if checked is None:
                cache.pop(id(param), None)
                rest.append(param)
                continue
            cache[id(param)] = (param, pointer, checked)
        # torch keeps .grad on the parameter's device with its dtype and shape; dtype and size are re-checked
        # anyway, as they bound what the kernel reads
        if (type(grad) is not Tensor or grad.layout is not torch.strided or not grad.is_contiguous()
                or grad.dtype is not dtype or grad.numel() != checked.numel or grad.is_neg()):
            rest.append(param)
            continue
        grad_pointer = grad.data_ptr()
        if not grad_pointer or grad_pointer == pointer or grad_pointer in checked.pointers:  # 0: a ZeroTensor
            rest.append(param)
            continue
        batch = batches.get(checked.key)
        if batch is None:
            batch = batches[checked.key] = _Batch()
        batch.param.append(pointer)
        batch.grad.append(grad_pointer)
        batch.owners.append(param)
        batch.grads.append(grad)
        batch.checks.append(checked)
    shared = _shared_memory(batches, rest, grads_written=bool(grad_inv_scale))
    if shared:  # rare: the reference rule steps them, in group order
        for batch in batches.values():
            _drop(batch, shared)
        moved = {id(p) for p in rest} | shared
        rest = [p for p in group["params"] if id(p) in moved]
    counts[id(group)] = sum(len(batch.checks) for batch in batches.values())
    hp = (ctypes.c_double * len(plan.hp))(*plan.hp)
    threads = torch.get_num_threads()
    for (variant, step_kind), batch in batches.items():
        fn = getattr(lib, f"dl_{plan.kernel}_{variant}")
        checks = batch.checks
        count = len(checks)
        if count == 0:
            continue
        keep: list[array] = []
        # one column per state tensor and the step counter; the extra 0-d entries in one tensor-major array
        # (extra[t·E + e])
        extras = len(plan.extra) if plan.steps else 0
        width = len(keys) - extras
        columns = iter([_array(column, keep) for column in zip(*[c.pointers[:width] for c in checks])] if width else [])
        state_arrays = [next(columns) if key is not None else None for key in plan.state_keys]  # s0, s1, s2 slots
        counter_arrays = [next(columns) if plan.steps else None,
                          _array([a for c in checks for a in c.pointers[width:]], keep) if extras else None]
        status = fn(count, _array([c.numel for c in checks], keep), _array(batch.param, keep), _array(batch.grad, keep),
                    *state_arrays, *counter_arrays, step_kind, hp, grad_inv_scale, threads)
        if status == 1:
            raise MemoryError(f"descentlab: the fused {plan.kernel} kernel could not allocate its scratch space")
        if status != 0:
            raise RuntimeError(f"descentlab: the fused {plan.kernel} kernel refused its arguments (status {status}); "
                               "nothing was changed — please report this with impl='reference' as a workaround")
        # autograd's check that saved tensors were not modified in place relies on these counters: the parameters'
        # (and the gradients', unscaled in place); not the state's, which graphs do not save (≈ 250 ns a tensor)
        torch.autograd.graph.increment_version(batch.owners + batch.grads if grad_inv_scale else batch.owners)
    return rest
