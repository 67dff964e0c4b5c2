"""The one registry table: name → optimizer class, defaults, variants and bad inputs; and the presets that
reproduce other libraries' optimizers (Keras 3, optax, PyTorch) by name.

Tests, the lab and the CLI all read this table, so a new optimizer is one new row.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch.optim import Optimizer

from descentlab.optim.adadelta import Adadelta
from descentlab.optim.adafactor import Adafactor
from descentlab.optim.adagrad import Adagrad
from descentlab.optim.adam import Adam, AdamW
from descentlab.optim.adamax import Adamax
from descentlab.optim.asgd import ASGD
from descentlab.optim.lbfgs import LBFGS
from descentlab.optim.lion import Lion
from descentlab.optim.momentum import Momentum, Nesterov
from descentlab.optim.muon import Muon
from descentlab.optim.nadam import NAdam
from descentlab.optim.radam import RAdam
from descentlab.optim.rmsprop import RMSprop
from descentlab.optim.rprop import Rprop
from descentlab.optim.schedulefree import ScheduleFreeAdamW, ScheduleFreeSGD
from descentlab.optim.sgd import SGD
from descentlab.optim.sparse_adam import SparseAdam

#: What a row may need beyond the ordinary contract — dense gradients of parameters of any shape, one ``step()``
#: per gradient, any number of param groups — each with the sentence that says so. ``OptimizerSpec.requires``
#: names them; the registry-driven tests build inputs that meet them or skip with :meth:`OptimizerSpec.unmet`'s
#: reason, and the lab and the CLI say why such a row does not race.
REQUIREMENTS: dict[str, str] = {
    "matrices": "steps 2-D parameters only (weight matrices; biases, norms and embeddings need another optimizer)",
    "sparse": "takes sparse gradients only (nn.Embedding(sparse=True)); a dense gradient is refused",
    "closure": "needs step(closure), a closure that re-evaluates the loss several times per step, and one param "
               "group",
}


@dataclass(frozen=True)
class OptimizerSpec:
    """One row of the registry.

    Attributes:
        name: lower-case registry name (``"adam"``).
        cls: the descentlab class.
        defaults: keyword arguments that build a sensible instance (``lr`` included, since some
            classes require it); the lab's "default" race uses them.
        variants: named option sets (conventions and torch options) every test runs.
        bad_inputs: ``(kwargs, fragment)`` pairs: building with ``kwargs`` must raise ``ValueError``
            whose message contains ``fragment`` (the culprit's name).
        torch_equivalent: ``(torch class, kwargs mapping)`` giving the same trajectory, or ``None``.
        summary: one line for listings.
        requires: keys of :data:`REQUIREMENTS` this row needs beyond the ordinary contract (``"matrices"``,
            ``"sparse"``, ``"closure"``).
    """

    name: str
    cls: type[Optimizer]
    defaults: dict[str, Any]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_inputs: tuple[tuple[dict[str, Any], str], ...] = ()
    torch_equivalent: tuple[type[Optimizer], dict[str, Any]] | None = None
    summary: str = ""
    requires: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.requires) - set(REQUIREMENTS))
        if unknown:
            raise ValueError(f"registry row {self.name!r}: unknown requirements {unknown}; known: {sorted(REQUIREMENTS)}")

    def unmet(self, offered: Iterable[str] = ()) -> str | None:
        """Why this row cannot run where only the ``offered`` requirements are met — ``"muon steps 2-D parameters
        only (…)"`` — or ``None`` when it can."""
        missing = sorted(set(self.requires) - set(offered))
        return "; ".join(f"{self.name} {REQUIREMENTS[key]}" for key in missing) or None

    @property
    def lr(self) -> float:
        """The default learning rate of this row."""
        return float(self.defaults["lr"])

    def build(self, params: Iterable[Any], **options: Any) -> Optimizer:
        """An instance over ``params`` with the row's defaults overridden by ``options``."""
        return self.cls(params, **{**self.defaults, **options})


_COMMON_BAD: tuple[tuple[dict[str, Any], str], ...] = (
    ({"lr": -1.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": "fast"}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"),
)
_EPS_BAD: tuple[tuple[dict[str, Any], str], ...] = (
    ({"eps": -1e-8}, "eps"),
    ({"eps_placement": "middle"}, "eps_placement"),
)
_BETAS_BAD: tuple[tuple[dict[str, Any], str], ...] = (
    ({"betas": (1.0, 0.999)}, "betas[0]"),
    ({"betas": (0.9, -0.1)}, "betas[1]"),
    ({"betas": (0.9,)}, "betas"),
)

_DECOUPLED_BAD: tuple[tuple[dict[str, Any], str], ...] = (
    ({"decoupled_weight_decay": "yes"}, "decoupled_weight_decay"),
)
_ADAM_FORM_BAD: tuple[tuple[dict[str, Any], str], ...] = (
    ({"efficient_form": True, "eps_placement": "inside"}, "efficient_form"),
    ({"amsgrad_max": "largest"}, "amsgrad_max"),
    ({"amsgrad_max": "corrected"}, "amsgrad_max"),
    ({"amsgrad": True, "amsgrad_max": "corrected", "efficient_form": True}, "amsgrad_max"),
)

_SCHEDULE_FREE_BAD: tuple[tuple[dict[str, Any], str], ...] = (
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"r": -1.0}, "r"),
    ({"weight_lr_power": float("nan")}, "weight_lr_power"),
)

REGISTRY: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in [
        OptimizerSpec(
            "sgd", SGD, {"lr": 0.01},
            variants={"plain": {}, "momentum": {"momentum": 0.9}, "dampening": {"momentum": 0.9, "dampening": 0.5},
                      "nesterov": {"momentum": 0.9, "nesterov": True},
                      "ema": {"momentum": 0.9, "momentum_form": "ema"},
                      "weight_decay": {"momentum": 0.9, "weight_decay": 0.01}, "maximize": {"maximize": True},
                      "lr_in_buffer": {"momentum": 0.9, "lr_in_buffer": True},
                      "lr_in_buffer_nesterov": {"momentum": 0.9, "nesterov": True, "lr_in_buffer": True},
                      "decoupled": {"momentum": 0.9, "weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _DECOUPLED_BAD + (
                                      ({"momentum": 0.9, "momentum_form": "ema", "lr_in_buffer": True}, "lr_in_buffer"),
                                      ({"momentum": 0.9, "dampening": 0.5, "lr_in_buffer": True}, "dampening"),
                                      ({"lr_in_buffer": 1}, "lr_in_buffer"),
                                      ({"momentum": -0.5}, "momentum"), ({"momentum": 1.0}, "momentum"),
                                      ({"nesterov": True}, "nesterov"),
                                      ({"momentum": 0.9, "dampening": 0.1, "nesterov": True}, "nesterov"),
                                      ({"momentum_form": "average"}, "momentum_form"),
                                      ({"momentum": 0.9, "dampening": 0.1, "momentum_form": "ema"}, "dampening")),
            torch_equivalent=(torch.optim.SGD, {}),
            summary="plain gradient descent (batch, stochastic, mini-batch); torch.optim.SGD options",
        ),
        OptimizerSpec(
            "momentum", Momentum, {"lr": 0.01, "beta": 0.9},
            variants={"ema": {}, "sum": {"form": "sum"}, "bias_correction": {"bias_correction": True},
                      "weight_decay": {"weight_decay": 0.01}, "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _DECOUPLED_BAD + (({"beta": 1.0}, "beta"), ({"beta": -0.1}, "beta"), ({"form": "avg"}, "form"),
                                      ({"form": "sum", "bias_correction": True}, "bias_correction")),
            summary="momentum as an exponentially weighted average of gradients (lecture form)",
        ),
        OptimizerSpec(
            "nesterov", Nesterov, {"lr": 0.001, "beta": 0.9},  # η/(1 − β) = 0.01: the step of sgd and momentum
            variants={"plain": {}, "weight_decay": {"weight_decay": 0.01}, "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _DECOUPLED_BAD + (({"beta": 1.5}, "beta"),),
            torch_equivalent=(torch.optim.SGD, {"beta": "momentum", "nesterov": True}),
            summary="Nesterov accelerated gradient, stored look-ahead form",
        ),
        OptimizerSpec(
            "adagrad", Adagrad, {"lr": 0.01},
            variants={"plain": {}, "lr_decay": {"lr_decay": 0.01}, "initial": {"initial_accumulator_value": 0.1},
                      "inside": {"eps_placement": "inside"}, "weight_decay": {"weight_decay": 0.01},
                      "maximize": {"maximize": True}, "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _DECOUPLED_BAD + (({"lr_decay": -1.0}, "lr_decay"),
                                                 ({"initial_accumulator_value": -1.0}, "initial_accumulator_value")),
            torch_equivalent=(torch.optim.Adagrad, {}),
            summary="per-coordinate rates from the sum of squared gradients",
        ),
        OptimizerSpec(
            "adadelta", Adadelta, {"lr": 1.0},
            variants={"plain": {}, "outside": {"eps_placement": "outside"}, "rho": {"rho": 0.95},
                      "weight_decay": {"weight_decay": 0.01}, "maximize": {"maximize": True}, "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _DECOUPLED_BAD + (({"rho": 1.5}, "rho"), ({"rho": -0.1}, "rho")),
            torch_equivalent=(torch.optim.Adadelta, {}),
            summary="Adagrad's repair: EMAs of g² and of the steps, no learning rate needed",
        ),
        OptimizerSpec(
            "rmsprop", RMSprop, {"lr": 0.01},
            variants={"plain": {}, "lecture": {"alpha": 0.9, "eps_placement": "inside"},
                      "centered": {"centered": True}, "momentum": {"momentum": 0.9},
                      "centered_momentum": {"centered": True, "momentum": 0.5},
                      "weight_decay": {"weight_decay": 0.01}, "maximize": {"maximize": True},
                      "lr_in_buffer": {"momentum": 0.9, "lr_in_buffer": True},
                      "nesterov": {"momentum": 0.9, "nesterov": True},
                      "centered_nesterov_lr_in_buffer": {"centered": True, "momentum": 0.5, "nesterov": True,
                                                         "lr_in_buffer": True, "eps_placement": "inside"},
                      "initial_scale": {"initial_scale": 1.0}, "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _DECOUPLED_BAD + (({"alpha": 1.0}, "alpha"), ({"alpha": -0.5}, "alpha"),
                                                 ({"momentum": -0.1}, "momentum"), ({"nesterov": True}, "nesterov"),
                                                 ({"initial_scale": -1.0}, "initial_scale"),
                                                 ({"lr_in_buffer": "yes"}, "lr_in_buffer")),
            torch_equivalent=(torch.optim.RMSprop, {}),
            summary="per-coordinate rates from an EMA of g²",
        ),
        OptimizerSpec(
            "adam", Adam, {"lr": 0.001},
            variants={"plain": {}, "amsgrad": {"amsgrad": True}, "inside": {"eps_placement": "inside"},
                      "no_bias_correction": {"bias_correction": False}, "weight_decay": {"weight_decay": 0.01},
                      "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True},
                      "maximize": {"maximize": True}, "efficient": {"efficient_form": True},
                      "efficient_amsgrad": {"efficient_form": True, "amsgrad": True},
                      "amsgrad_corrected": {"amsgrad": True, "amsgrad_max": "corrected"}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _BETAS_BAD + _ADAM_FORM_BAD + (
                ({"bias_correction": "yes"}, "bias_correction"),),
            torch_equivalent=(torch.optim.Adam, {}),
            summary="momentum + RMSProp with bias correction",
        ),
        OptimizerSpec(
            "adamw", AdamW, {"lr": 0.001},
            variants={"plain": {}, "amsgrad": {"amsgrad": True}, "inside": {"eps_placement": "inside"},
                      "no_bias_correction": {"bias_correction": False}, "no_decay": {"weight_decay": 0.0},
                      "efficient": {"efficient_form": True},
                      "amsgrad_corrected": {"amsgrad": True, "amsgrad_max": "corrected"}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _BETAS_BAD + _ADAM_FORM_BAD,
            torch_equivalent=(torch.optim.AdamW, {}),
            summary="Adam with decoupled weight decay",
        ),
        OptimizerSpec(
            "nadam", NAdam, {"lr": 0.002},
            variants={"plain": {}, "inside": {"eps_placement": "inside"}, "weight_decay": {"weight_decay": 0.01},
                      "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True},
                      "momentum_decay": {"momentum_decay": 0.01},
                      "mu_product_f64": {"momentum_decay": 1.0, "mu_product_dtype": torch.float64},
                      "constant_momentum": {"momentum_decay": math.inf, "mu_product_dtype": torch.float64}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _BETAS_BAD + (({"momentum_decay": -1.0}, "momentum_decay"),
                                                              ({"momentum_decay": float("nan")}, "momentum_decay"),
                                                              ({"mu_product_dtype": torch.float16}, "mu_product_dtype")),
            torch_equivalent=(torch.optim.NAdam, {}),
            summary="Adam with Nesterov momentum",
        ),
        OptimizerSpec(
            "adamax", Adamax, {"lr": 0.002},
            variants={"plain": {}, "weight_decay": {"weight_decay": 0.01}, "maximize": {"maximize": True},
                      "betas": {"betas": (0.8, 0.99)}, "eps_outside": {"eps_placement": "outside", "eps": 1e-3},
                      "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True}},
            bad_inputs=_COMMON_BAD + _EPS_BAD + _BETAS_BAD + _DECOUPLED_BAD,
            torch_equivalent=(torch.optim.Adamax, {}),
            summary="Adam with the infinity norm: a running maximum of |g| in place of v",
        ),
        OptimizerSpec(
            "radam", RAdam, {"lr": 0.001},
            variants={"plain": {}, "weight_decay": {"weight_decay": 0.01},
                      "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True},
                      "maximize": {"maximize": True}, "betas": {"betas": (0.5, 0.9)}},
            bad_inputs=_COMMON_BAD + _BETAS_BAD + (({"eps": -1e-8}, "eps"),
                                                   ({"decoupled_weight_decay": "yes"}, "decoupled_weight_decay")),
            torch_equivalent=(torch.optim.RAdam, {}),
            summary="Adam whose adaptive rate is switched on once its variance is tractable, then rectified",
        ),
        OptimizerSpec(
            "rprop", Rprop, {"lr": 0.01},
            variants={"plain": {}, "maximize": {"maximize": True}, "etas": {"etas": (0.3, 1.5)},
                      "step_sizes": {"step_sizes": (1e-3, 0.05)}, "weight_decay": {"weight_decay": 0.01}},
            bad_inputs=_COMMON_BAD + (({"etas": (1.5, 1.2)}, "etas[0]"), ({"etas": (0.5, 0.9)}, "etas[1]"),
                                          ({"etas": (0.5,)}, "etas"), ({"step_sizes": (-1.0, 50)}, "step_sizes[0]"),
                                          ({"step_sizes": (1.0, 0.5)}, "step_sizes")),
            torch_equivalent=(torch.optim.Rprop, {}),
            summary="per-coordinate step sizes grown or shrunk by the sign of g alone (full-batch)",
        ),
        OptimizerSpec(
            "asgd", ASGD, {"lr": 0.01},
            variants={"plain": {}, "averaging": {"t0": 2.0}, "schedule": {"lambd": 0.01, "alpha": 0.5, "t0": 4.0},
                      "weight_decay": {"weight_decay": 0.01}, "maximize": {"maximize": True}},
            bad_inputs=_COMMON_BAD + (({"lambd": -1.0}, "lambd"), ({"alpha": -0.5}, "alpha"),
                                      ({"t0": float("nan")}, "t0")),
            torch_equivalent=(torch.optim.ASGD, {}),
            summary="SGD with a decaying rate and a running average of the iterates (state['ax'])",
        ),
        OptimizerSpec(
            "adafactor", Adafactor, {"lr": 0.01},
            variants={"plain": {}, "weight_decay": {"weight_decay": 0.01}, "maximize": {"maximize": True},
                      "eps1": {"eps": (1e-30, 1e-3)}, "clipping": {"d": 2.0, "beta2_decay": -0.5}},
            bad_inputs=_COMMON_BAD + (({"beta2_decay": 0.5}, "beta2_decay"), ({"eps": (-1.0, 1e-3)}, "eps[0]"),
                                      ({"eps": (None, -1.0)}, "eps[1]"), ({"eps": 1e-3}, "eps"), ({"d": 0.5}, "d")),
            torch_equivalent=(torch.optim.Adafactor, {}),
            summary="Adam-like steps with a factored second moment (a row and a column per matrix), relative steps",
        ),
        OptimizerSpec(
            "muon", Muon, {"lr": 0.02},
            variants={"plain": {}, "no_nesterov": {"nesterov": False}, "match_rms_adamw": {"adjust_lr_fn":
                                                                                          "match_rms_adamw"},
                      "no_decay": {"weight_decay": 0.0}, "short": {"momentum": 0.9, "ns_steps": 3}},
            bad_inputs=_COMMON_BAD + (({"momentum": -0.5}, "momentum"), ({"ns_steps": 100}, "ns_steps"),
                                      ({"ns_coefficients": (1.0, 2.0)}, "ns_coefficients"),
                                      ({"adjust_lr_fn": "rms"}, "adjust_lr_fn"), ({"eps": -1.0}, "eps")),
            torch_equivalent=(torch.optim.Muon, {}),
            summary="momentum orthogonalised by a Newton–Schulz iteration: for the weight matrices of hidden layers",
            requires=frozenset({"matrices"}),
        ),
        OptimizerSpec(
            "sparseadam", SparseAdam, {"lr": 0.001},
            variants={"plain": {}, "maximize": {"maximize": True}, "betas": {"betas": (0.5, 0.9)}},
            bad_inputs=_COMMON_BAD[:3] + _BETAS_BAD + (({"lr": 0.0}, "lr"), ({"eps": 0.0}, "eps")),
            torch_equivalent=(torch.optim.SparseAdam, {}),
            summary="lazy Adam for sparse gradients (embeddings): only the rows looked up move",
            requires=frozenset({"sparse"}),
        ),
        OptimizerSpec(
            "lbfgs", LBFGS, {"lr": 1.0},
            variants={"plain": {}, "strong_wolfe": {"line_search_fn": "strong_wolfe"},
                      "short_history": {"history_size": 3, "max_iter": 5}},
            bad_inputs=_COMMON_BAD[:3] + (({"max_iter": 0}, "max_iter"), ({"history_size": 0}, "history_size"),
                                          ({"line_search_fn": "armijo"}, "line_search_fn"),
                                          ({"tolerance_grad": -1.0}, "tolerance_grad"),
                                          ({"max_eval": 0}, "max_eval")),
            torch_equivalent=(torch.optim.LBFGS, {}),
            summary="quasi-Newton over the whole parameter vector, with an optional strong-Wolfe line search",
            requires=frozenset({"closure"}),
        ),
        OptimizerSpec(
            "lion", Lion, {"lr": 1e-4},
            variants={"plain": {}, "weight_decay": {"weight_decay": 0.1},
                      "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True},
                      "betas": {"betas": (0.95, 0.98)}, "maximize": {"maximize": True}},
            bad_inputs=_COMMON_BAD + (({"betas": (1.5, 0.99)}, "betas[0]"), ({"betas": (0.9, -0.1)}, "betas[1]"),
                                      ({"betas": (0.9,)}, "betas"), ({"use_triton": "yes"}, "use_triton"),
                                      ({"lr": 0.0, "decoupled_weight_decay": True}, "decoupled_weight_decay")),
            summary="the sign of an interpolated momentum: every coordinate moves by lr (lion-pytorch)",
        ),
        OptimizerSpec(
            "schedulefree-adamw", ScheduleFreeAdamW, {"lr": 0.0025},
            variants={"plain": {}, "warmup": {"warmup_steps": 5}, "weight_decay": {"weight_decay": 0.01},
                      "r": {"r": 1.0, "weight_lr_power": 0.0}, "betas": {"betas": (0.5, 0.9)},
                      "maximize": {"maximize": True}},
            bad_inputs=_COMMON_BAD + _BETAS_BAD + _SCHEDULE_FREE_BAD + (({"eps": -1e-8}, "eps"),
                                                                        ({"betas": (0.0, 0.999)}, "betas[0]")),
            summary="AdamW without a schedule: gradients at y, an average x to evaluate (train()/eval(), schedulefree)",
        ),
        OptimizerSpec(
            "schedulefree-sgd", ScheduleFreeSGD, {"lr": 0.01},
            variants={"plain": {}, "warmup": {"warmup_steps": 5}, "weight_decay": {"weight_decay": 0.01},
                      "momentum": {"momentum": 0.5}, "r": {"r": 1.0, "weight_lr_power": 0.0},
                      "maximize": {"maximize": True}},
            bad_inputs=_COMMON_BAD + _SCHEDULE_FREE_BAD + (({"momentum": 0.0}, "momentum"),
                                                           ({"momentum": 1.0}, "momentum")),
            summary="SGD without a schedule: gradients at y, an average x to evaluate (train()/eval(), schedulefree)",
        ),
    ]
}


def optimizer_names() -> list[str]:
    """Registry names in table order."""
    return list(REGISTRY)


def _typo_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``."""
    rows = [list(range(len(b) + 1))]
    for i, x in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def suggest(name: str, choices: Iterable[str]) -> list[str]:
    """The choices ``name`` is most likely a typo of: the fewest edits (at most 2) first, else difflib's."""
    word = str(name).lower()
    scored = sorted((_typo_distance(word, choice), choice) for choice in choices)
    near = [choice for distance, choice in scored if distance <= min(2, scored[0][0])] if scored else []
    return near or difflib.get_close_matches(word, [c for _, c in scored], n=1)


def get_spec(name: str) -> OptimizerSpec:
    """The registry row ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    key = name.lower() if isinstance(name, str) else name
    if key not in REGISTRY:
        close = suggest(str(name), REGISTRY)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown optimizer {name!r}.{hint} Valid names: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def create_optimizer(name: str, params: Iterable[Any], **options: Any) -> Optimizer:
    """Build registry optimizer ``name`` over ``params`` (row defaults, overridden by ``options``); a preset name
    (``"keras-adam"``, ``"optax-nadam"``, …, see :data:`PRESETS`) builds that preset instead."""
    key = name.lower() if isinstance(name, str) else name
    if key not in REGISTRY and key in PRESETS:
        return PRESETS[key].build(params, **options)
    return get_spec(name).build(params, **options)


# -- presets: other libraries' optimizers, defaults included -----------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """One other library's optimizer as a descentlab class with every option — defaults included — that
    reproduces it (tests/test_conventions_keras.py, tests/test_conventions_optax.py: float64, 60 steps, with
    and without a schedule, within 1e-12 relative).

    Attributes:
        library: ``"keras"`` (Keras 3), ``"optax"`` or ``"torch"``.
        name: the library's own name (``"Adam"``, ``"nadamw"``).
        optimizer: the registry row it is built from (its class).
        options: the descentlab options; overrides passed to :meth:`build` replace them (descentlab's names).
        requires_lr: the library has no default learning rate (optax), so ``lr`` must be passed.
        note: what a user of the library should know (a convention, a quirk).
    """

    library: str
    name: str
    optimizer: str
    options: dict[str, Any] = field(default_factory=dict)
    requires_lr: bool = False
    note: str = ""

    @property
    def key(self) -> str:
        """``"<library>-<name>"`` in lower case: the name ``create_optimizer`` and ``preset`` accept."""
        return f"{self.library}-{self.name}".lower()

    def build(self, params: Iterable[Any], **overrides: Any) -> Optimizer:
        """The configured optimizer over ``params``; ``overrides`` (descentlab's option names) win."""
        if self.requires_lr and "lr" not in overrides:
            raise ValueError(f"preset {self.key!r}: {self.library}.{self.name} has no default learning rate; "
                             "pass lr=…")
        return REGISTRY[self.optimizer].cls(params, **{**self.options, **overrides})


_KERAS_EPS = 1e-7
_KERAS_DECAY = {"decoupled_weight_decay": True}  # Keras's weight_decay: w ← w − ηλw before every rule
_BETAS = (0.9, 0.999)

PRESETS: dict[str, Preset] = {
    p.key: p
    for p in [
        # Keras 3 (keras.optimizers.*): defaults of keras 3.x
        Preset("keras", "SGD", "sgd", {"lr": 0.01, "momentum": 0.0, "nesterov": False, "lr_in_buffer": True,
                                       **_KERAS_DECAY},
               note="momentum m ← βm − η_t g holds the rate: lr_in_buffer=True"),
        Preset("keras", "RMSprop", "rmsprop", {"lr": 1e-3, "alpha": 0.9, "momentum": 0.0, "eps": _KERAS_EPS,
                                               "centered": False, "eps_placement": "inside", "lr_in_buffer": True,
                                               **_KERAS_DECAY},
               note="ε inside the root; the momentum buffer holds the rate"),
        Preset("keras", "Adam", "adam", {"lr": 1e-3, "betas": _BETAS, "eps": _KERAS_EPS, "amsgrad": False,
                                         "efficient_form": True, **_KERAS_DECAY},
               note="the paper's efficient form: ε is ε̂, added to √v; amsgrad=True takes the maximum of the raw v"),
        Preset("keras", "AdamW", "adamw", {"lr": 1e-3, "betas": _BETAS, "eps": _KERAS_EPS, "weight_decay": 0.004,
                                           "amsgrad": False, "efficient_form": True},
               note="Keras's Adam form with decoupled decay λ = 0.004"),
        Preset("keras", "Nadam", "nadam", {"lr": 1e-3, "betas": _BETAS, "eps": _KERAS_EPS, "momentum_decay": 1.0,
                                           "mu_product_dtype": torch.float64, **_KERAS_DECAY},
               note="μ_t = β₁(1 − ½·0.96ᵗ): PyTorch's form with momentum_decay = 1 (undocumented in Keras); Π in "
                    "float64"),
        Preset("keras", "Adagrad", "adagrad", {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": _KERAS_EPS,
                                               "eps_placement": "inside", **_KERAS_DECAY},
               note="G starts at 0.1, ε inside the root"),
        Preset("keras", "Adadelta", "adadelta", {"lr": 1e-3, "rho": 0.95, "eps": _KERAS_EPS,
                                                 "eps_placement": "inside", **_KERAS_DECAY},
               note="η = 1e-3, not the pure algorithm's 1"),
        Preset("keras", "Adamax", "adamax", {"lr": 1e-3, "betas": _BETAS, "eps": _KERAS_EPS,
                                             "eps_placement": "outside", **_KERAS_DECAY},
               note="u ← max(β₂u, |g|), ε added to u in the denominator"),
        # optax (optax.*): learning_rate has no default
        Preset("optax", "sgd", "sgd", {"momentum": 0.0, "nesterov": False}, requires_lr=True,
               note="optax.trace is PyTorch's sum form (the rate outside the buffer)"),
        Preset("optax", "rmsprop", "rmsprop", {"alpha": 0.9, "eps": 1e-8, "eps_placement": "inside",
                                               "initial_scale": 0.0, "centered": False, "momentum": 0.0,
                                               "nesterov": False, "lr_in_buffer": True}, requires_lr=True,
               note="decay = alpha; momentum (optax.trace after the rate) holds the rate; nesterov and "
                    "initial_scale as optax's"),
        Preset("optax", "adam", "adam", {"betas": _BETAS, "eps": 1e-8}, requires_lr=True,
               note="PyTorch's form (eps_root = 0)"),
        Preset("optax", "adamw", "adamw", {"betas": _BETAS, "eps": 1e-8, "weight_decay": 1e-4}, requires_lr=True,
               note="decoupled decay λ = 1e-4, scaled by the rate"),
        Preset("optax", "amsgrad", "adam", {"betas": _BETAS, "eps": 1e-8, "amsgrad": True,
                                            "amsgrad_max": "corrected"}, requires_lr=True,
               note="the running maximum of the bias-corrected v̂"),
        Preset("optax", "nadam", "nadam", {"betas": _BETAS, "eps": 1e-8, "momentum_decay": math.inf,
                                           "mu_product_dtype": torch.float64}, requires_lr=True,
               note="adam(nesterov=True): constant μ = β₁, i.e. momentum_decay = inf"),
        Preset("optax", "nadamw", "nadam", {"betas": _BETAS, "eps": 1e-8, "momentum_decay": math.inf,
                                            "mu_product_dtype": torch.float64, "weight_decay": 1e-4,
                                            "decoupled_weight_decay": True}, requires_lr=True,
               note="nadam with decoupled decay λ = 1e-4"),
        Preset("optax", "adagrad", "adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-7,
                                               "eps_placement": "inside"}, requires_lr=True,
               note="G starts at 0.1, ε inside the root"),
        Preset("optax", "adadelta", "adadelta", {"rho": 0.9, "eps": 1e-6, "eps_placement": "inside"},
               requires_lr=True,
               note="optax.adadelta(learning_rate=None) applies +Δ (it ascends): that is lr=1.0, maximize=True"),
        Preset("optax", "adamax", "adamax", {"betas": _BETAS, "eps": 1e-8}, requires_lr=True,
               note="PyTorch's form: ε inside the maximum"),
        Preset("optax", "adamaxw", "adamax", {"betas": _BETAS, "eps": 1e-8, "weight_decay": 1e-4,
                                              "decoupled_weight_decay": True}, requires_lr=True,
               note="adamax with decoupled decay λ = 1e-4"),
        # PyTorch (torch.optim.*): descentlab's torch-named classes keep torch's defaults
        *(Preset("torch", cls_name, row, note="the class's own defaults are torch's")
          for cls_name, row in [("SGD", "sgd"), ("RMSprop", "rmsprop"), ("Adam", "adam"), ("AdamW", "adamw"),
                                ("NAdam", "nadam"), ("Adagrad", "adagrad"), ("Adadelta", "adadelta"),
                                ("Adamax", "adamax")]),
    ]
}


def preset_names() -> list[str]:
    """Preset names (``"keras-adam"``, …) in table order."""
    return list(PRESETS)


def get_preset(library: str, name: str) -> Preset:
    """The preset of ``library``'s optimizer ``name`` (case-insensitive); an unknown one raises ``ValueError``
    listing the library's presets."""
    key = f"{library}-{name}".lower() if isinstance(library, str) and isinstance(name, str) else None
    if key in PRESETS:
        return PRESETS[key]
    libraries = sorted({p.library for p in PRESETS.values()})
    if not isinstance(library, str) or library.lower() not in libraries:
        raise ValueError(f"no presets for library {library!r}; libraries: {', '.join(libraries)}")
    names = [p.name for p in PRESETS.values() if p.library == library.lower()]
    close = suggest(str(name), [n.lower() for n in names])
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"no preset {name!r} for {library.lower()}.{hint} Presets: {', '.join(names)}")


def preset(library: str, name: str, params: Iterable[Any], **overrides: Any) -> Optimizer:
    """``library``'s optimizer ``name`` over ``params``, configured to reproduce it exactly (defaults included);
    ``overrides`` use descentlab's option names. ``preset("keras", "Adam", model.parameters())``."""
    return get_preset(library, name).build(params, **overrides)
