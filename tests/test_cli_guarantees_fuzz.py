"""Flag fuzz (issue 18): every option of every verb given values no option accepts — words, NaN, infinities,
negative numbers, overflowing exponents, bare separators — must end with exit code 2 and one line
``descentlab VERB: error: …`` naming the flag, never a traceback. Bounded: about 400 invocations, one process
per verb (``main`` called in it for each), the arguments derived from the parser itself."""

from __future__ import annotations

import argparse

import pytest

from test_cli_guarantees_lab import run_many

from descentlab.cli import build_parser

NASTY = ["abc", "nan", "inf", "-inf", "-1", "1e999", "=", ":", ",,"]
#: a valid positional and cheap settings per verb, so that only the fuzzed value can be wrong
BASE = {"train": ["iris", "--epochs", "1", "--quiet"],
        "race": ["ravine", "--optimizers", "sgd", "--steps", "5", "--frames", "2"],
        "lr_find": ["iris", "--steps", "10"],
        "compare": ["iris", "--optimizers", "sgd", "--trials", "0", "--seeds", "1", "--budget", "1"],
        "schedules": ["--epochs", "2"],
        "demo": ["--steps", "10"]}
VERB_NAMES = {"lr_find": "lr-find"}


def _options(verb: str) -> tuple[list[str], list[str]]:
    """The verb's value-taking options (``--out`` aside) and whether it has a positional."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[VERB_NAMES.get(verb, verb)]
    flags = [a.option_strings[-1] for a in parser._actions
             if a.option_strings and a.nargs != 0 and a.option_strings[-1] not in ("--out", "--help")]
    positional = [a.dest for a in parser._actions if not a.option_strings]
    return flags, positional


@pytest.mark.slow
@pytest.mark.parametrize("verb", list(BASE))
def test_every_flag_refuses_nonsense_in_one_line(verb, tmp_path):
    name = VERB_NAMES.get(verb, verb)
    flags, positional = _options(verb)
    base = BASE[verb]
    cases, labels = [], []
    for flag in flags:
        for value in NASTY:
            cases.append([name, *base, f"{flag}={value}", "--out", str(tmp_path / f"o{len(cases)}")])
            labels.append((flag, value))
    if positional:
        for value in NASTY:
            cases.append([name, value, *base[1:], "--out", str(tmp_path / f"o{len(cases)}")])
            labels.append((positional[0], value))
    assert len(cases) <= 150
    for label, args, (code, err) in zip(labels, cases, run_many(cases)):
        assert "Traceback" not in err, (args, err)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"descentlab {name}: error: "), (args, code, err)
        flag = label[0]
        named = flag in lines[0] or flag.lstrip("-").replace("-", "_") in lines[0] or (
            flag in ("dataset", "landscape") and (label[1] in lines[0] or "unknown" in lines[0]))
        assert named, (args, lines[0])
    assert [p for p in tmp_path.iterdir()] == []  # nothing was written anywhere
