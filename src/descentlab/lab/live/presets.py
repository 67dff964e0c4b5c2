"""The lesson book's experiments as presets of the live lab.

Every lesson carries the command line that reproduces it (``Lesson.cli``); those that are races
(``descentlab race LANDSCAPE --optimizers … --lr … --opt …``) are read here — with the race verb's own option
language (:mod:`descentlab.lab.options`) — into a request of the live API: the landscape, the optimizers with
their rates and options, the steps, the start and the noise. Titles and leads come in the book's languages.
The lessons that are not races (the training modes, the batch size, the EMA) are listed with their command and
no preset.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from descentlab.lab.options import parse_pairs

LANGUAGES = ("en", "ko")


def _race_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    p.add_argument("landscape")
    p.add_argument("--optimizers")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--start")
    p.add_argument("--lr")
    p.add_argument("--opt", action="append", default=[])
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    return p


def request_of(cli: str) -> dict[str, Any] | None:
    """The live request of a ``descentlab race …`` line, or ``None`` for another verb."""
    words = shlex.split(cli, comments=True)
    if words[:2] != ["descentlab", "race"]:
        return None
    args, _ = _race_parser().parse_known_args(words[2:])
    from descentlab.lab.race import DEFAULT_OPTIMIZERS

    names = args.optimizers.split(",") if args.optimizers else list(DEFAULT_OPTIMIZERS)
    rates = parse_pairs(args.lr, "--lr")
    options = {}
    for item in args.opt:
        key, _, rest = item.partition(":")
        options[key] = parse_pairs(rest, f"--opt {key}")
    runs = []
    for racer in names:
        opts = {k: list(v) if isinstance(v, tuple) else v for k, v in options.get(racer, {}).items()}
        if racer in rates:
            opts["lr"] = rates[racer]
        runs.append({"name": racer.partition("@")[0], "options": opts, "label": racer})
    body: dict[str, Any] = {"landscape": args.landscape, "steps": args.steps, "optimizers": runs}
    if args.start:
        body["start"] = [float(v) for v in args.start.split(",")]
    if args.noise:
        body["noise"], body["seed"] = args.noise, args.seed
    return body


def lesson_presets(lang: str = "en") -> list[dict[str, Any]]:
    """``[{"id", "title", "lead", "cli", "request"}]`` for every lesson, in ``lang`` (``"en"`` or ``"ko"``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    from descentlab.lab.lessons import LESSONS

    k = LANGUAGES.index(lang)
    return [{"id": lesson.id, "title": lesson.title[k], "lead": lesson.lead[k], "cli": lesson.cli,
             "request": request_of(lesson.cli)} for lesson in LESSONS]
