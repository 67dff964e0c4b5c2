"""``descentlab landscapes``: list the 2-D landscapes."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("landscapes", help="list the 2-D landscapes for races")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descentlab.lab.landscapes import LANDSCAPES

    for ls in LANDSCAPES.values():
        minima = len(ls.minima)
        f_star = "unbounded" if ls.f_star is None else f"f* = {ls.f_star:.6g}"
        print(f"{ls.name:<15} {ls.formula}")
        print(f"{'':<15} start {ls.start}, {minima} known minim{'um' if minima == 1 else 'a'}, {f_star}: {ls.lesson}")
    return 0
