"""Parameter groups the way timm and Hugging Face build them: no weight decay on biases and normalisation weights,
and optional layer-wise learning-rate decay.

``param_groups(model, weight_decay=0.01)`` returns a list of groups ready for any optimizer, descentlab's or
torch's (``torch.optim.AdamW(param_groups(model), lr=…)``):

* a parameter is **not decayed** when one of the ``no_decay`` patterns matches it: ``"bias"`` matches names
  ending in ``bias`` (``fc.bias``, ``self_attn.in_proj_bias``); ``"norm"`` matches the parameters of normalisation
  layers (``LayerNorm``, ``BatchNorm*``, ``GroupNorm``, ``InstanceNorm*``, ``RMSNorm``, ``LocalResponseNorm``) and
  names containing ``norm``; any other pattern matches names containing it (``"pos_embed"``). This is HF
  Trainer's rule (``get_parameter_names(model, ALL_LAYERNORM_LAYERS)`` minus biases) and timm's
  (``param_groups_weight_decay``: biases and 1-D weights), named instead of guessed from the dimension;
* with ``layer_decay = γ`` in (0, 1] the parameters are also split by depth (timm's
  ``param_groups_layer_decay``): the blocks of the model's first ``nn.ModuleList`` with ``L`` entries (a
  transformer's layers) get ids 1…L, what comes before them (embeddings) 0, after them (norms, head) L + 1, and a
  group of id ``i`` gets ``lr = lr · γ^(L + 1 − i)`` (and ``lr_scale``, as timm stores it), so the head learns at
  ``lr`` and each block below at γ times the one above. ``lr`` is then required.

Frozen parameters (``requires_grad=False``) are left out, empty groups are dropped, and every group carries the
names of its parameters (``param_names``, which torch's optimizers keep).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from torch import nn

#: Normalisation layers whose parameters the ``"norm"`` pattern matches (by type, whatever their names).
NORM_LAYERS: tuple[type[nn.Module], ...] = tuple(
    cls for cls in (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, getattr(nn, "RMSNorm", None),
                    nn.modules.batchnorm._NormBase) if cls is not None)


def _check_patterns(no_decay: Any) -> tuple[str, ...]:
    if isinstance(no_decay, str) or not isinstance(no_decay, Iterable):
        raise ValueError(f"no_decay must be a sequence of name patterns such as ('bias', 'norm'), got {no_decay!r}")
    patterns = tuple(no_decay)
    bad = [p for p in patterns if not isinstance(p, str) or not p]
    if bad:
        raise ValueError(f"no_decay patterns must be non-empty strings, got {bad[0]!r}")
    return patterns


def _number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not (
            (value > low if low_open else value >= low) and value <= high):
        left = "(" if low_open else "["
        right = "]" if high != math.inf else ")"
        raise ValueError(f"{name} must be a number in {left}{low:g}, {'inf' if high == math.inf else f'{high:g}'}"
                         f"{right}, got {value!r}")
    return float(value)


def _matches(pattern: str, name: str, module: nn.Module) -> bool:
    leaf = name.rsplit(".", 1)[-1].lower()
    if pattern == "bias":
        return leaf.endswith("bias")
    if pattern == "norm":
        return isinstance(module, NORM_LAYERS) or "norm" in name.lower()
    return pattern.lower() in name.lower()


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """Each parameter's name → the module that holds it directly."""
    owners: dict[str, nn.Module] = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            owners.setdefault(f"{module_name}.{param_name}" if module_name else param_name, module)
    return owners


def _layer_ids(model: nn.Module, names: list[str]) -> tuple[dict[str, int], int]:
    """Each name's depth id (0 before the blocks, 1…L inside, L + 1 after) and L, from the first ModuleList."""
    blocks = next(((name, module) for name, module in model.named_modules()
                   if isinstance(module, nn.ModuleList) and len(module) > 0), None)
    if blocks is None:
        raise ValueError(f"layer_decay needs the model's layers as an nn.ModuleList (a transformer's "
                         f"encoder.layers, timm's blocks); {type(model).__name__} has none")
    prefix, layers = blocks
    count = len(layers)
    ids: dict[str, int] = {}
    seen_blocks = False
    for name in names:
        if name.startswith(prefix + "."):
            ids[name] = int(name[len(prefix) + 1:].split(".", 1)[0]) + 1
            seen_blocks = True
        else:
            ids[name] = count + 1 if seen_blocks else 0
    return ids, count


def param_groups(model: nn.Module, weight_decay: float = 0.01, no_decay: Iterable[str] = ("bias", "norm"),
                 layer_decay: float | None = None, lr: float | None = None) -> list[dict[str, Any]]:
    """Param groups of ``model``: decayed and not decayed (and, with ``layer_decay``, one pair per depth); see
    the module docstring. ``param_groups(model, weight_decay=0.05)`` →
    ``[{"params": [...], "weight_decay": 0.05, "param_names": [...]}, {"params": [...], "weight_decay": 0.0, …}]``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"param_groups takes a torch.nn.Module, got {type(model).__name__}")
    decay = _number("weight_decay", weight_decay, 0.0, math.inf)
    patterns = _check_patterns(no_decay)
    if layer_decay is not None:
        gamma = _number("layer_decay", layer_decay, 0.0, 1.0, low_open=True)
        if lr is None:
            raise ValueError("layer_decay sets each group's lr (lr · layer_decay^depth): pass lr=…")
        base_lr = _number("lr", lr, 0.0, math.inf)
    elif lr is not None:
        base_lr = _number("lr", lr, 0.0, math.inf)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    owners = _owners(model)
    ids, count = _layer_ids(model, [n for n, _ in named]) if layer_decay is not None else ({}, 0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in named:
        decayed = not any(_matches(p, name, owners[name]) for p in patterns)
        key = (ids.get(name, 0), decayed)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"params": [], "param_names": [], "weight_decay": decay if decayed else 0.0}
            if layer_decay is not None:
                scale = gamma ** (count + 1 - key[0])
                group["lr_scale"], group["lr"] = scale, base_lr * scale
            elif lr is not None:
                group["lr"] = base_lr
        group["params"].append(param)
        group["param_names"].append(name)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]
