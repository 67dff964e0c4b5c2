"""``descentlab datasets``: list the bundled and generated datasets."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("datasets", help="list the datasets (all offline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descentlab import datasets

    for name in datasets.names():
        print(datasets.load(name).summary())
    return 0
