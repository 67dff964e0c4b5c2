"""The update rules: plain functions over tensors, one family per file.

Every rule updates its tensors in place for one parameter tensor. It knows nothing of
parameter groups or ``torch.optim``; :mod:`descentlab.optim` lifts rules to optimizers.
Notation follows ``formulas.md``: parameters ``w``, gradient ``g``, step ``t`` (1-based),
learning rate ``η``.
"""

from descentlab.rules.adadelta import adadelta
from descentlab.rules.adagrad import adagrad
from descentlab.rules.adam import adam, amsgrad
from descentlab.rules.adamax import adamax
from descentlab.rules.common import bias_correction, prepare_gradient, root_with_eps
from descentlab.rules.nadam import nadam
from descentlab.rules.rmsprop import centered_rmsprop, rmsprop
from descentlab.rules.sgd import ema_momentum, heavy_ball, sgd

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "amsgrad",
    "bias_correction",
    "centered_rmsprop",
    "ema_momentum",
    "heavy_ball",
    "nadam",
    "prepare_gradient",
    "rmsprop",
    "root_with_eps",
    "sgd",
]
