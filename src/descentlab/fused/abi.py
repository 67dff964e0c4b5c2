"""The C kernels' calling convention, in one table: which rule each kernel runs, which state slot is which,
and each ``hp[i]`` by name.

Every kernel of ``cpu_kernels.h`` has one signature (``KERNEL_SIGNATURE`` there): tensor columns
``param, grad, s0, s1, s2, step, extra`` and ``hp``, an array of doubles. ``extra`` holds a rule's 0-d state
besides the step counter, ``E`` entries per tensor, tensor-major (``extra[t·E + e]``: NAdam's ``mu_product``,
ASGD's ``eta`` and ``mu``); bit ``1 + e`` of ``step_f64`` says entry ``e`` is float64. Rules whose per-step
scalars are the param group's (schedule-free's rate and averaging weight) get them from ``plan().hp``. :func:`kernel_call` turns a
:class:`~descentlab.rules.plan.StepPlan` into a :class:`KernelCall` — or ``None`` when the plan's rule has
no kernel, or asks for something its kernel cannot do (then the reference loop runs it). A kernel is an
optional speed-up for a rule: a rule missing from :data:`CPU_KERNELS` runs on the reference path.

Adding a kernel: write it in ``cpu_kernels.h`` (reading ``hp`` in the order named here), add it to
``cpu_kernels.c``'s variant list, add one row here, and raise :data:`KERNEL_ABI_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from descentlab import rules
from descentlab.rules.plan import Rule, StepPlan

#: Version of the kernels' calling convention; compiled into the library (``-DDL_ABI_VERSION``) and checked at
#: load, so a cached library built from older sources is rebuilt. Raise it with any change of a signature
#: or of an ``hp`` order.
KERNEL_ABI_VERSION = 5
#: Version of the native gatherer's (cpu_gather.cpp) interface, compiled in and checked the same way.
GATHER_ABI_VERSION = 4


@dataclass(frozen=True)
class KernelAbi:
    """One rule's kernel: its name in cpu_kernels.h, the plan's state keys that go to slots s0, s1, s2 (a key
    the plan lacks is passed as NULL), how it treats the step counter (``"always"`` advances it, ``"never"``
    has none, ``"flag"``: hp ``counts_steps`` says), the plan's 0-d state entries passed as ``extra`` (in that
    order, at most :data:`MAX_EXTRA`), and ``hp``: each position's name. ``auto=False``: only ``impl="fused"``
    takes the kernel; ``impl="auto"`` keeps the rule on its multi-tensor path (see the schedule-free AdamW row). A name is a key of the
    plan's ``hp``, one of the plan's fields (``maximize``, ``weight_decay``, ``decoupled``, ``counts_steps``), a
    :data:`DERIVED` quantity, or a key of ``fixed`` (constants of this rule)."""

    kernel: str
    slots: tuple[str | None, str | None, str | None]
    hp: tuple[str, ...]
    steps: str = "always"
    extra: tuple[str, ...] = ()
    fixed: dict[str, float] = field(default_factory=dict)
    auto: bool = True


@dataclass(frozen=True)
class KernelCall:
    """What one group's kernel call needs: the kernel, the state keys passed as s0, s1, s2 (``None``: not
    passed), whether ``state["step"]`` exists and is advanced, the extra 0-d state entries (read only with a step
    counter), and ``hp`` in order."""

    kernel: str
    state_keys: tuple[str | None, str | None, str | None]
    steps: bool
    extra: tuple[str, ...]
    hp: tuple[float, ...]


#: The most 0-d state entries a kernel takes in ``extra`` (cpu_gather.cpp's limit too).
MAX_EXTRA = 2


#: Quantities the kernels read that are functions of the plan's hyperparameters.
DERIVED: dict[str, Callable[[StepPlan], Any]] = {
    "eps_inside": lambda plan: plan.hp["eps_placement"] == "inside",
    "undamped": lambda plan: 1.0 - float(plan.hp["dampening"]),
}

_ADAM_HP = ("lr", "beta1", "beta2", "eps", "eps_inside", "amsgrad", "bias_correction", "decoupled", "weight_decay",
            "maximize")
_RMSPROP_HP = ("lr", "alpha", "eps", "eps_inside", "momentum", "centered", "weight_decay", "maximize")
_RMSPROP_SLOTS = ("square_avg", "grad_avg", "momentum_buffer")
_ADAMAX_HP = ("lr", "beta1", "beta2", "eps", "eps_inside", "decoupled", "weight_decay", "maximize")

#: rule → its C kernel. The order of ``hp`` is the order ``cpu_kernels.h`` reads ``hp[0]``, ``hp[1]``, ….
CPU_KERNELS: dict[Rule, KernelAbi] = {
    rules.sgd: KernelAbi("sgd", (None, None, None), ("lr", "weight_decay", "maximize"), steps="never"),
    rules.heavy_ball: KernelAbi("heavy_ball", ("momentum_buffer", None, None),
                                ("lr", "momentum", "undamped", "nesterov", "weight_decay", "maximize", "counts_steps"),
                                steps="flag"),
    rules.ema_momentum: KernelAbi("ema_momentum", ("momentum_buffer", None, None),
                                  ("lr", "beta", "nesterov", "bias_correction", "weight_decay", "maximize",
                                   "counts_steps"), steps="flag"),
    rules.adagrad: KernelAbi("adagrad", ("sum", None, None),
                             ("lr", "lr_decay", "eps", "eps_inside", "weight_decay", "maximize")),
    rules.adadelta: KernelAbi("adadelta", ("square_avg", "acc_delta", None),
                              ("lr", "rho", "eps", "eps_inside", "weight_decay", "maximize")),
    rules.rmsprop: KernelAbi("rmsprop", _RMSPROP_SLOTS, _RMSPROP_HP, fixed={"centered": 0.0}),
    rules.centered_rmsprop: KernelAbi("rmsprop", _RMSPROP_SLOTS, _RMSPROP_HP, fixed={"centered": 1.0}),
    rules.adam: KernelAbi("adam", ("exp_avg", "exp_avg_sq", None), _ADAM_HP, fixed={"amsgrad": 0.0}),
    rules.amsgrad: KernelAbi("adam", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), _ADAM_HP, fixed={"amsgrad": 1.0}),
    rules.nadam: KernelAbi("nadam", ("exp_avg", "exp_avg_sq", None),
                           ("lr", "beta1", "beta2", "eps", "eps_inside", "momentum_decay", "decoupled",
                            "weight_decay", "maximize"), extra=("mu_product",)),
    rules.adamax: KernelAbi("adamax", ("exp_avg", "exp_inf", None), _ADAMAX_HP, fixed={"eps_inside": 1.0}),
    rules.adamax_eps_outside: KernelAbi("adamax", ("exp_avg", "exp_inf", None), _ADAMAX_HP, fixed={"eps_inside": 0.0}),
    rules.radam: KernelAbi("radam", ("exp_avg", "exp_avg_sq", None),
                           ("lr", "beta1", "beta2", "eps", "decoupled", "weight_decay", "maximize")),
    rules.rprop: KernelAbi("rprop", ("prev", "step_size", None),
                           ("etaminus", "etaplus", "step_size_min", "step_size_max", "weight_decay", "maximize")),
    rules.asgd: KernelAbi("asgd", ("ax", None, None), ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize"),
                          extra=("eta", "mu")),
    rules.lion: KernelAbi("lion", ("exp_avg", None, None),
                          ("lr", "beta1", "beta2", "decoupled", "weight_decay", "maximize"), steps="never"),
    # Schedule-free: the step count, rate η_k and averaging weight c_{k+1} are the param group's, computed once per
    # group and step by the optimizer (plan().hp: lr, ckp1, bias_correction2); the kernel takes the per-tensor
    # part, on y and z. train() / eval() move the parameters between y and x outside any step (a Python lerp,
    # not a rule), and step() refuses eval mode, so a kernel only ever sees y.
    rules.schedulefree_sgd: KernelAbi("schedulefree_sgd", ("z", None, None),
                                      ("lr", "momentum", "ckp1", "weight_decay", "maximize"), steps="never"),
    # auto=False: the kernel's √ is IEEE's, correctly rounded; torch's CPU sqrt (MKL VML, VML_HA) is not — on an
    # AVX-512 AMD EPYC with torch 2.13 ≈ 18 % of float32 results are 1 ulp off — and ScheduleFreeAdamW promises the
    # schedulefree package's results to the bit on impl="auto" (tests/test_schedulefree.py), which its foreach path
    # keeps (the same torch ops as the package). impl="fused" takes this kernel (within the fused path's ulps, as
    # Adam's); Lion, ScheduleFreeSGD and ASGD have no square root and are bit-identical on every path.
    rules.schedulefree_adamw: KernelAbi("schedulefree_adamw", ("z", "exp_avg_sq", None),
                                        ("lr", "beta1", "beta2", "eps", "decay", "ckp1", "bias_correction2",
                                         "maximize"), steps="never", auto=False),
}
_FIELDS = ("maximize", "weight_decay", "decoupled", "counts_steps")


def _value(plan: StepPlan, abi: KernelAbi, name: str) -> float:
    if name in abi.fixed:
        return abi.fixed[name]
    if name in DERIVED:
        return float(DERIVED[name](plan))
    if name in _FIELDS:
        return float(getattr(plan, name))
    return float(plan.hp[name])


_CALLS: dict[tuple[Any, ...], KernelCall | None] = {}


def kernel_call(plan: StepPlan, impl: str = "auto") -> KernelCall | None:
    """The C call for ``plan``, or ``None`` when its rule has no kernel or the kernel cannot honour the plan
    (decoupled decay on a kernel without it, state it has no slot for, a step counter it does not keep), or when
    the kernel is ``impl="fused"``'s only (:attr:`KernelAbi.auto`) and ``impl`` is not ``"fused"``.
    Remembered by the plan's contents (a step on a tiny model spends more on building the call than in C)."""
    abi = CPU_KERNELS.get(plan.rule)
    if abi is not None and not abi.auto and impl != "fused":
        return None
    try:
        key: tuple[Any, ...] | None = (plan.rule, plan.state, plan.extra, plan.maximize, plan.weight_decay,
                                       plan.decoupled, plan.counts_steps, *plan.hp.items())
        found = _CALLS.get(key, _MISSING)  # type: ignore[arg-type]
    except TypeError:  # an unhashable hyperparameter: build the call each time
        key, found = None, _MISSING
    if found is not _MISSING:
        return found  # type: ignore[return-value]
    call = _build_call(plan)
    if key is not None:
        if len(_CALLS) > 4096:  # schedules make new rates every step: keep the table small
            _CALLS.clear()
        _CALLS[key] = call
    return call


_MISSING = object()


def _build_call(plan: StepPlan) -> KernelCall | None:
    abi = CPU_KERNELS.get(plan.rule)
    if abi is None:
        return None
    if plan.decoupled and "decoupled" not in abi.hp:
        return None
    if plan.weight_decay != 0 and "weight_decay" not in abi.hp:
        return None  # a decay this kernel does not read
    if plan.counts_steps != (abi.steps == "always") and abi.steps != "flag":
        return None
    extra = abi.extra
    slot_keys = [key for key in abi.slots if key in plan.state]
    if plan.extra != extra or sorted(slot_keys + list(extra)) != sorted(plan.state):
        return None
    slots = tuple(key if key in plan.state else None for key in abi.slots)
    hp = tuple(_value(plan, abi, name) for name in abi.hp)
    return KernelCall(abi.kernel, (slots[0], slots[1], slots[2]), plan.counts_steps, abi.extra, hp)


def kernels_by_rule() -> dict[str, str]:
    """``{rule name: kernel name}`` of every rule that has a C kernel (for listings and tests)."""
    return {rule.__name__: abi.kernel for rule, abi in CPU_KERNELS.items()}
