"""Small models for the lab, built by name and initialised with PyTorch's initialisers from a seed.

=============  ==============================================================
``linear``     linear regression ``ŷ = W x + b`` (train with MSE, the mean)
``logistic``   logistic / softmax regression: one linear layer giving logits
``mlp``        multilayer perceptron, ReLU hidden layers (default one of 100)
``cnn1d``      a small 1-D CNN for signals such as mnist1d (the paper's shape)
``quadratic``  DeepOBS's quadratic: outputs ``½ (θ − x)ᵀ Q (θ − x)`` per sample
=============  ==============================================================
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import torch
from torch import nn


class QuadraticModel(nn.Module):
    """Per-sample loss ``½ (θ − x)ᵀ Q (θ − x)`` with θ starting at 1 (DeepOBS ``net_quadratic_deep``)."""

    hessian: torch.Tensor  # a registered buffer

    def __init__(self, hessian: Any) -> None:
        super().__init__()
        q = torch.as_tensor(hessian, dtype=torch.float32)
        if q.dim() != 2 or q.shape[0] != q.shape[1]:
            raise ValueError(f"hessian must be a square matrix, got shape {tuple(q.shape)}")
        self.register_buffer("hessian", q)
        self.theta = nn.Parameter(torch.ones(q.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.theta - x
        return 0.5 * ((d @ self.hessian) * d).sum(dim=1)


class CNN1D(nn.Module):
    """Three 1-D convolutions (25 channels, kernel 5, stride 2, ReLU) and a linear read-out — the mnist1d
    paper's ConvBase shape."""

    def __init__(self, in_features: int, out_features: int, channels: int = 25) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 1, in_features)).numel()
        self.head = nn.Linear(flat, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.unsqueeze(1)).flatten(1))


def _mlp(in_features: int, out_features: int, hidden: tuple[int, ...] = (100,)) -> nn.Module:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        if not isinstance(h, int) or h < 1:
            raise ValueError(f"hidden sizes must be positive integers, got {hidden!r}")
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "linear": lambda i, o, **kw: nn.Linear(i, o, **kw),
    "logistic": lambda i, o, **kw: nn.Linear(i, o, **kw),
    "mlp": _mlp,
    "cnn1d": lambda i, o, **kw: CNN1D(i, o, **kw),
    "quadratic": lambda i, o, **kw: QuadraticModel(**kw),
}


def names() -> list[str]:
    """The model names."""
    return list(BUILDERS)


def build(name: str, in_features: int, out_features: int, *, seed: int = 0, **options: Any) -> nn.Module:
    """Model ``name`` with PyTorch's default initialisers drawn from ``seed`` (the global RNG is untouched)."""
    if name not in BUILDERS:
        close = difflib.get_close_matches(str(name), BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Valid names: {', '.join(BUILDERS)}")
    for arg, value in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BUILDERS[name](in_features, out_features, **options)
