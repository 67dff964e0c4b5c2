"""The ``state_dict`` half of the adapter: torch's format plus a ``descentlab_format`` marker, and a load that
checks the state fits the optimizer (format version, state keys of the rule, tensor shapes, a finite step
count >= 0, hyperparameters checked as the constructor checks them) with a message naming the culprit, and keeps a wider ``state_dtype``'s precision."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

#: Version of descentlab's additions to a ``state_dict`` (the ``descentlab_format`` entry); a state_dict
#: without the entry (say, from ``torch.optim``) is accepted, one from a newer format is refused.
STATE_FORMAT = 1
#: Options every descentlab optimizer has (restored from the defaults when a loaded state_dict lacks them).
COMMON_OPTIONS: tuple[str, ...] = ("impl", "nonfinite", "state_dtype")


class StateDictOptimizer(Optimizer):
    """``state_dict`` / ``load_state_dict`` of :class:`~descentlab.optim.base.RuleOptimizer`, which it is the base of."""

    extra_options: tuple[str, ...] = ()

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        """Fill an empty ``state`` dict for ``param`` (each optimizer's state layout)."""
        raise NotImplementedError

    @staticmethod
    def _wide_dtype(param: Tensor, group: dict[str, Any]) -> torch.dtype | None:
        """The dtype the state is kept and the step computed in when it is wider than ``param``'s, else None."""
        wanted = group.get("state_dtype")
        if wanted is None or not param.is_floating_point() or param.dtype.itemsize >= wanted.itemsize:
            return None
        return wanted

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict`` plus a ``descentlab_format`` marker (torch.optim ignores it when loading)."""
        state = super().state_dict()
        state["descentlab_format"] = STATE_FORMAT
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Check ``state_dict`` fits this optimizer — format version, state keys of this rule, tensor shapes —
        with a message naming the culprit, then load it as torch does."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("not an optimizer state_dict: it needs 'state' and 'param_groups'")
        version = state_dict.get("descentlab_format", STATE_FORMAT)
        if not isinstance(version, int) or version > STATE_FORMAT:
            raise ValueError(f"state_dict has descentlab_format {version!r}; this descentlab reads formats up to "
                             f"{STATE_FORMAT} — upgrade descentlab to load it")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for index, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {index}: state_dict has {len(saved['params'])} parameters, this "
                                 f"optimizer has {len(group['params'])}")
            merged = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            for key in self.extra_options + COMMON_OPTIONS:
                merged.setdefault(key, self.defaults[key])
            try:  # a loaded group is checked as the constructor checks its arguments
                self._validate_group(merged)  # type: ignore[attr-defined]
            except (ValueError, TypeError) as err:
                raise ValueError(f"{type(self).__name__}.load_state_dict: param group {index}: {err}") from None
            for saved_id, param in zip(saved["params"], group["params"]):
                entry = state_dict["state"].get(saved_id)
                if entry:
                    self._check_loaded_state(type(self).__name__, param, merged, entry, saved_id)
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "descentlab_format"})
        self._restore_wide_state(state_dict)

    def _restore_wide_state(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` casts floating state to each parameter's dtype; a parameter with a wider
        ``state_dtype`` gets its saved state back at full precision instead (0-d entries such as NAdam's
        ``mu_product`` in the dtype they were saved in; ``step`` torch leaves alone)."""
        for saved, group in zip(state_dict["param_groups"], self.param_groups):
            for saved_id, param in zip(saved["params"], group["params"]):
                wide = self._wide_dtype(param, group)
                entry = state_dict["state"].get(saved_id)
                if wide is None or not entry:
                    continue
                for key, value in entry.items():
                    if isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0:
                        self.state[param][key] = value.to(dtype=wide, device=param.device, copy=True)
                    elif isinstance(value, Tensor) and value.is_floating_point() and key != "step":
                        self.state[param][key] = value.to(device=param.device, copy=True)

    def _check_loaded_state(self, name: str, param: Tensor, group: dict[str, Any], entry: dict[str, Any],
                            saved_id: Any) -> None:
        expected: dict[str, Any] = {}
        self._init_state(torch.empty_like(param, device="meta"), group, expected)
        if set(entry) != set(expected):
            raise ValueError(f"{name}.load_state_dict: parameter {saved_id} has state {sorted(entry)}, but this "
                             f"optimizer keeps {sorted(expected)} — was the state_dict saved by another optimizer "
                             "or with other options?")
        step = entry.get("step")
        if step is not None:
            number = float(step) if isinstance(step, (Tensor, int, float)) and not isinstance(step, bool) and (
                not isinstance(step, Tensor) or step.numel() == 1) else None
            if number is None or not (number >= 0 and number == number and number != float("inf")):
                raise ValueError(f"{name}.load_state_dict: state 'step' of parameter {saved_id} must be a finite "
                                 f"number >= 0, got {step!r}")
        for key, value in entry.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {saved_id} has shape "
                                 f"{tuple(value.shape)}, the parameter has shape {tuple(param.shape)}")

