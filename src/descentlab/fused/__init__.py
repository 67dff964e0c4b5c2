"""The fused execution path: each optimizer step as one pass over memory.

Selected by the optimizers' ``impl`` option (``"auto"`` | ``"reference"`` | ``"fused"`` | ``"foreach"`` |
``"torch_fused"``):

* CPU (:mod:`descentlab.fused.cpu_step`): C kernels (``cpu_kernels.h``) for every rule and convention —
  SGD, momentum (sum and ema forms), Nesterov, Adagrad, Adadelta, RMSprop (centered, momentum),
  Adam / AdamW / AMSGrad, NAdam — each group's tensors stepped in one OpenMP call; built once per
  machine (:mod:`descentlab.fused.cpu_build`). Used by ``"auto"`` and ``"fused"``.
* Other devices (:mod:`descentlab.fused.dispatch`): ``torch.compile`` of the rule kernels in
  :mod:`descentlab.fused.kernels`, for large tensors, ``"fused"`` only (and ``"auto"`` after many steps).

* torch's own fused kernels (:mod:`descentlab.fused.torch_fused`): ``torch._fused_adam_`` / ``_fused_adamw_`` /
  ``_fused_sgd_`` / ``_fused_adagrad_`` for groups whose convention is exactly torch's — ``"auto"`` off the CPU,
  ``"torch_fused"`` on every device.

Every executor reads an optimizer's :class:`~descentlab.rules.plan.StepPlan` and none imports an optimizer
class: :mod:`descentlab.fused.abi` maps rules to C kernels (their hyperparameters by name),
:mod:`descentlab.fused.compiled_rules` maps rules to compiled kernels. The reference rules stay the oracle;
docs/speed.md has the measurements.
"""

from descentlab.fused import dispatch
from descentlab.fused.abi import CPU_KERNELS, kernel_call
from descentlab.fused.cpu_step import fused_cpu_step
from descentlab.fused.foreach import foreach_step
from descentlab.fused.torch_fused import torch_fused_kind, torch_fused_step
from descentlab.fused.dispatch import AUTO_MIN_NUMEL, AUTO_MIN_STEPS, FUSED_MIN_NUMEL, eligible, try_fused_update

__all__ = ["AUTO_MIN_NUMEL", "AUTO_MIN_STEPS", "CPU_KERNELS", "FUSED_MIN_NUMEL", "dispatch", "eligible",
           "foreach_step", "fused_cpu_step", "kernel_call", "torch_fused_kind", "torch_fused_step", "try_fused_update"]
