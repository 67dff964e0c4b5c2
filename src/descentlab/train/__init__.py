"""The fit loop: history, progress, atomic checkpoints, exact resume."""

from descentlab.train.checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint
from descentlab.train.fit import TrainingDiverged, evaluate, fit
from descentlab.train.history import History
from descentlab.train.losses import LOSSES, TASK_LOSS, get_loss

__all__ = ["History", "LOSSES", "TASK_LOSS", "TrainingDiverged", "evaluate", "fit", "get_loss",
           "list_checkpoints", "load_latest_checkpoint", "save_checkpoint"]
