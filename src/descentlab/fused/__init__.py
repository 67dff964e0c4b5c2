"""The fused execution path: each optimizer step as one compiled pass over memory per tensor.

Selected by the optimizers' ``impl`` option (``"auto"`` | ``"reference"`` | ``"fused"``); see
:mod:`descentlab.fused.dispatch` for the rules of choice and docs/speed.md for measurements.
Kernels exist for ``RMSprop``, ``Adadelta``, ``NAdam`` and ``Adam`` / ``AdamW`` / AMSGrad (all
their conventions); SGD, momentum, Nesterov and Adagrad take the reference path under any ``impl``.
"""

from descentlab.fused.dispatch import AUTO_MIN_NUMEL, AUTO_MIN_STEPS, FUSED_MIN_NUMEL, eligible, try_fused_update

__all__ = ["AUTO_MIN_NUMEL", "AUTO_MIN_STEPS", "FUSED_MIN_NUMEL", "eligible", "try_fused_update"]
