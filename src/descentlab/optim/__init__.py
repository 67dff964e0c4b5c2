"""Optimizers: thin ``torch.optim.Optimizer`` adapters over the rules, and the registry table."""

from descentlab.optim.adadelta import Adadelta
from descentlab.optim.adafactor import Adafactor
from descentlab.optim.adagrad import Adagrad
from descentlab.optim.adam import Adam, AdamW
from descentlab.optim.adamax import Adamax
from descentlab.optim.asgd import ASGD
from descentlab.optim.base import RuleOptimizer
from descentlab.optim.lbfgs import LBFGS
from descentlab.optim.lion import Lion
from descentlab.optim.momentum import Momentum, Nesterov
from descentlab.optim.muon import Muon
from descentlab.optim.nadam import NAdam
from descentlab.optim.radam import RAdam
from descentlab.optim.registry import (PRESETS, REGISTRY, OptimizerSpec, create_optimizer, get_preset, get_spec,
                                       optimizer_names, preset, preset_names)
from descentlab.optim.rmsprop import RMSprop
from descentlab.optim.schedulefree import ScheduleFreeAdamW, ScheduleFreeSGD
from descentlab.optim.rprop import Rprop
from descentlab.optim.sgd import SGD
from descentlab.optim.sparse_adam import SparseAdam

__all__ = [
    "REGISTRY", "ASGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Momentum", "NAdam", "Nesterov", "OptimizerSpec",
    "RAdam", "RMSprop", "Rprop", "RuleOptimizer", "SGD", "create_optimizer", "get_spec", "optimizer_names",
    "Lion", "ScheduleFreeAdamW", "ScheduleFreeSGD",
    "Adafactor", "LBFGS", "Muon", "SparseAdam",
    "PRESETS", "get_preset", "preset", "preset_names",
]
