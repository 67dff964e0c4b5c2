"""Adam's other published forms: the paper's "efficient" form (Keras, TensorFlow) and optax's AMSGrad.

Symbols as in :mod:`descentlab.rules.adam` (``m``, ``v``, ``c₁ = 1 − β₁^t``, ``c₂ = 1 − β₂^t``; both 1 without
bias correction).

Efficient form (Kingma & Ba §2, the last paragraph; ``keras.optimizers.Adam`` / ``AdamW``)::

    m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²
    (AMSGrad, Keras's: on the raw v)  v_max ← max(v_max, v);  v_max replaces v below
    w ← w − η √c₂ / c₁ · m / (√v + ε̂)

It equals the standard form with the step-dependent ``ε = ε̂ / √c₂``; with a fixed ε the two differ wherever
``√v̂`` is comparable to ε (Keras's default ε̂ = 1e-7).

AMSGrad on the corrected second moment (``optax.amsgrad``; state ``v̂_max`` =
``max_corrected_exp_avg_sq``, not PyTorch's ``max_exp_avg_sq``, which holds the maximum of the raw v)::

    v̂ = v / c₂;   v̂_max ← max(v̂_max, v̂)
    w ← w − η / c₁ · m / D,   D = √v̂_max + ε (outside)  or  √(v̂_max + ε) (inside)

Since ``c₂`` grows with t, the maximum of ``v̂`` forgets a large early ``v`` that PyTorch's maximum of the raw v
keeps (divided by a shrinking ``c₂``).
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.adam import _update_moments
from descentlab.rules.common import EpsPlacement, addcdiv_, maximum_, root_with_eps
from descentlab.rules.common import bias_correction as _bias_correction


def _efficient_apply(param: Tensor, exp_avg: Tensor, second: Tensor, *, step: float, lr: float, beta1: float,
                     beta2: float, eps: float, bias_correction: bool) -> None:
    c1 = _bias_correction(beta1, step) if bias_correction else 1.0
    c2 = _bias_correction(beta2, step) if bias_correction else 1.0
    addcdiv_(param, exp_avg, root_with_eps(second, eps, "outside"), -(lr * c2**0.5 / c1))


def adam_efficient(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_correction: bool,
) -> None:
    """One Adam step in the efficient form ``w ← w − η √c₂/c₁ · m/(√v + ε̂)``."""
    _update_moments(grad, exp_avg, exp_avg_sq, beta1, beta2)
    _efficient_apply(param, exp_avg, exp_avg_sq, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     bias_correction=bias_correction)


def amsgrad_efficient(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_correction: bool,
) -> None:
    """One AMSGrad step in the efficient form (Keras): the running maximum of the raw ``v`` replaces ``v``."""
    _update_moments(grad, exp_avg, exp_avg_sq, beta1, beta2)
    maximum_(max_exp_avg_sq, exp_avg_sq)
    _efficient_apply(param, exp_avg, max_exp_avg_sq, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     bias_correction=bias_correction)


def amsgrad_corrected(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_corrected_exp_avg_sq: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_placement: EpsPlacement,
    bias_correction: bool,
) -> None:
    """One AMSGrad step in optax's form: the running maximum of the bias-corrected ``v̂``."""
    _update_moments(grad, exp_avg, exp_avg_sq, beta1, beta2)
    c1 = _bias_correction(beta1, step) if bias_correction else 1.0
    c2 = _bias_correction(beta2, step) if bias_correction else 1.0
    maximum_(max_corrected_exp_avg_sq, exp_avg_sq.div(c2))
    denom = root_with_eps(max_corrected_exp_avg_sq, eps, eps_placement)
    addcdiv_(param, exp_avg, denom, -(lr / c1))
