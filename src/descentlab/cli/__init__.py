"""``descentlab …``: a thin command line over the library.

Each verb lives in its own module ``descentlab.cli.<verb>`` that defines ``register(subparsers)``;
``register`` adds the verb's parser and sets ``func`` (``args -> exit code``) and, when the verb draws or
tunes, ``needs`` (the optional packages it imports). Add a verb by adding its module name to ``VERBS``.

A verb runs only when what it needs is installed: a missing lab package (matplotlib, scikit-learn, optuna,
tqdm, mnist1d — the ``lab`` extra) is named in one line, ``descentlab VERB: needs PACKAGE — pip install
'descentlab[lab]'``, with exit code 2, whether it is one of the verb's ``needs`` or turns up while it runs
(a dataset that needs scikit-learn).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# import name -> the package pip installs, for the packages of the ``lab`` extra
LAB_PACKAGES = {"matplotlib": "matplotlib", "sklearn": "scikit-learn", "optuna": "optuna", "tqdm": "tqdm",
                "mnist1d": "mnist1d"}

VERBS: tuple[str, ...] = (
    "demo",
    "optimizers",
    "schedules",
    "datasets",
    "train",
    "landscapes",
    "race",
    "lr_find",
    "compare",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``descentlab`` argument parser, with every verb whose module exists."""
    parser = argparse.ArgumentParser(
        prog="descentlab",
        description="Gradient-descent optimizers for PyTorch and a lab that shows why one beats another.",
    )
    from descentlab import __version__

    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        module_name = f"descentlab.cli.{verb}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # verb not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``descentlab`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from descentlab.extras import require

        for module_name in getattr(args, "needs", ()):
            require(module_name, f"descentlab {args.verb}")
        return int(args.func(args) or 0)
    except ImportError as err:
        package = LAB_PACKAGES.get((err.name or "").partition(".")[0])
        if package is None:  # not a missing lab package: a real bug, shown as one
            raise
        print(f"descentlab {args.verb}: needs {package} — pip install 'descentlab[lab]'", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:  # bad input, an existing output, a folder that cannot be written
        print(f"descentlab {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
