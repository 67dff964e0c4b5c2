"""``descentlab optimizers``: list the registry, and say why a row does not race."""

from __future__ import annotations

import argparse

#: What the lab's race (descentlab.lab.race) gives an optimizer: one 2-vector per racer, dense gradients, ``step()``
#: without a closure — none of registry.REQUIREMENTS, so a row that needs one of them does not race.
RACE_OFFERS: tuple[str, ...] = ()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("optimizers", help="list the optimizers of the registry")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descentlab.optim.registry import REGISTRY

    width = max(len(n) for n in REGISTRY)
    cls_width = max(len(spec.cls.__name__) for spec in REGISTRY.values())
    for name, spec in REGISTRY.items():
        print(f"{name:<{width}}  {spec.cls.__name__:<{cls_width}}  lr={spec.lr:<6g} {spec.summary}")
        reason = spec.unmet(RACE_OFFERS)
        if reason:
            print(f"{'':<{width}}  does not race: {reason}")
    return 0
