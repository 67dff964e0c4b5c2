"""descentlab: gradient-descent optimizers for PyTorch, exact to the formula, and a lab that shows why.

>>> import torch, descentlab
>>> model = torch.nn.Linear(3, 1)
>>> opt = descentlab.Adam(model.parameters(), lr=1e-3)      # drop-in for torch.optim.Adam
"""

from descentlab import schedules
from descentlab.averaging import EMA, WeightEMA, ema
from descentlab.optim import (
    PRESETS,
    REGISTRY,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    AdamW,
    Adamax,
    LBFGS,
    Lion,
    ASGD,
    Momentum,
    Muon,
    NAdam,
    Nesterov,
    OptimizerSpec,
    RAdam,
    RMSprop,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
    SparseAdam,
    Rprop,
    create_optimizer,
    get_preset,
    get_spec,
    optimizer_names,
    preset,
    preset_names,
)

from descentlab.param_groups import param_groups
from descentlab.schedules import Scheduler
from descentlab.data import suggest_batch_size
from descentlab.train import History, fit
from descentlab import datasets, models
from descentlab._version import __version__

__all__ = [
    "REGISTRY", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "ASGD", "Momentum", "NAdam", "Nesterov", "RAdam", "Rprop",
    "EMA", "History", "OptimizerSpec", "datasets", "fit", "models", "suggest_batch_size", "RMSprop", "Scheduler", "WeightEMA", "ema", "schedules", "create_optimizer", "get_spec", "optimizer_names", "__version__",
    "Lion", "ScheduleFreeAdamW", "ScheduleFreeSGD",
    "Adafactor", "LBFGS", "Muon", "SparseAdam", "param_groups",
    "PRESETS", "get_preset", "preset", "preset_names",
]
