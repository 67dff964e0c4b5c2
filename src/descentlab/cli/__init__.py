"""``descentlab …``: a thin command line over the library.

Each verb lives in its own module ``descentlab.cli.<verb>`` that defines ``register(subparsers)``;
``register`` adds the verb's parser and sets ``func`` (``args -> exit code``) and, when the verb draws or
tunes, ``needs`` (the optional packages it imports). Add a verb by adding its module name to ``VERBS``.

A verb runs only when what it needs is installed: a missing lab package (matplotlib, scikit-learn, optuna,
tqdm, mnist1d — the ``lab`` extra) is named in one line, ``descentlab VERB: needs PACKAGE — pip install
'descentlab[lab]'``, with exit code 2, whether it is one of the verb's ``needs`` or turns up while it runs
(a dataset that needs scikit-learn).

Every error is one line, ``descentlab VERB: error: …``, with exit code 2: bad arguments (checked while
parsing, naming the flag and the allowed values), bad settings, an output folder in use or holding something
else, a full disk (``no space left on …``), a diverged run. Warnings are one line too. Anything else is a bug:
one line saying so, exit code 1 (``DESCENTLAB_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from descentlab.cli._args import Parser

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
    "lessons",
    "lab",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``descentlab`` argument parser, with every verb whose module exists."""
    parser = Parser(
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


def _message(err: BaseException) -> str:
    """One line for an error: an OSError as "what went wrong: which file", anything else as its text."""
    if isinstance(err, OSError) and err.strerror and len(err.args) > 1:
        text = err.strerror[0].lower() + err.strerror[1:]
        text = f"{text}: {err.filename}" if err.filename else text
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``descentlab`` command."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (its one line already printed)
        return done.code if isinstance(done.code, int) else 2
    if unknown:  # said by the verb, naming what it does not take
        who = f"descentlab {args.verb}" if getattr(args, "verb", None) else "descentlab"
        print(f"{who}: error: unrecognized arguments: {' '.join(unknown)} (see {who} --help)", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    verb = f"descentlab {args.verb}"

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{verb}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = one_line
    try:
        return _run(args)
    finally:
        warnings.showwarning = previous


def _run(args: argparse.Namespace) -> int:
    from descentlab.train import TrainingDiverged

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
    except (ValueError, OSError, TrainingDiverged) as err:  # bad input, an output in the way, a full disk, …
        prefix = "training diverged: " if isinstance(err, TrainingDiverged) else ""
        print(f"descentlab {args.verb}: error: {prefix}{_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"descentlab {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("DESCENTLAB_TRACEBACK"):
            raise
        print(f"descentlab {args.verb}: error: unexpected {type(err).__name__}: {_message(err)} — a bug in "
              "descentlab; DESCENTLAB_TRACEBACK=1 shows where", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
