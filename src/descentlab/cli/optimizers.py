"""``descentlab optimizers``: list the registry."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("optimizers", help="list the optimizers of the registry")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descentlab.optim.registry import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name, spec in REGISTRY.items():
        print(f"{name:<{width}}  {spec.cls.__name__:<9}  lr={spec.lr:<6g} {spec.summary}")
    return 0
