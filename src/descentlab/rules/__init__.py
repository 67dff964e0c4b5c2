"""The update rules: plain functions over tensors, one family per file.

Every rule updates its tensors in place for one parameter tensor. It knows nothing of
parameter groups or ``torch.optim``; :mod:`descentlab.optim` lifts rules to optimizers.
Notation follows ``formulas.md``: parameters ``w``, gradient ``g``, step ``t`` (1-based),
learning rate ``η``.
"""

from descentlab.rules.adadelta import adadelta
from descentlab.rules.adafactor import adafactor_factored, adafactor_vector
from descentlab.rules.adagrad import adagrad
from descentlab.rules.adam import adam, amsgrad
from descentlab.rules.adam_forms import adam_efficient, amsgrad_corrected, amsgrad_efficient
from descentlab.rules.adamax import adamax
from descentlab.rules.adamax_forms import adamax_eps_outside
from descentlab.rules.asgd import asgd
from descentlab.rules.common import bias_correction, prepare_gradient, root_with_eps
from descentlab.rules.lbfgs import cubic_interpolate, remember, strong_wolfe, two_loop_direction
from descentlab.rules.lion import lion
from descentlab.rules.momentum_lr_inside import heavy_ball_lr_inside
from descentlab.rules.muon import muon, newton_schulz
from descentlab.rules.nadam import nadam
from descentlab.rules.radam import radam
from descentlab.rules.rmsprop import centered_rmsprop, rmsprop
from descentlab.rules.rmsprop_momentum import centered_rmsprop_momentum, rmsprop_momentum
from descentlab.rules.rprop import rprop
from descentlab.rules.schedulefree import schedulefree_adamw, schedulefree_sgd
from descentlab.rules.sgd import ema_momentum, heavy_ball, sgd
from descentlab.rules.sparse_adam import sparse_adam

__all__ = [
    "adadelta",
    "adafactor_factored",
    "adafactor_vector",
    "adagrad",
    "adam",
    "adam_efficient",
    "adamax",
    "adamax_eps_outside",
    "amsgrad",
    "amsgrad_corrected",
    "amsgrad_efficient",
    "asgd",
    "bias_correction",
    "centered_rmsprop",
    "centered_rmsprop_momentum",
    "cubic_interpolate",
    "ema_momentum",
    "heavy_ball",
    "heavy_ball_lr_inside",
    "lion",
    "muon",
    "nadam",
    "newton_schulz",
    "prepare_gradient",
    "radam",
    "rmsprop",
    "remember",
    "rmsprop_momentum",
    "root_with_eps",
    "rprop",
    "schedulefree_adamw",
    "schedulefree_sgd",
    "sgd",
    "sparse_adam",
    "strong_wolfe",
    "two_loop_direction",
]
