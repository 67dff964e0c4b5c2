"""Flag fuzz (issue 18): every option of every verb given values no option accepts — words, NaN, infinities,
negative numbers, overflowing exponents, bare separators — must end with exit code 2 and one line
``descentlab VERB: error: …`` naming the flag, never a traceback. Bounded: about 450 invocations, one process
per verb (``main`` called in it for each), the arguments derived from the parser itself. ``lab`` (a server, no
``--out``) gets only invalid flags and values, in a process where a server that starts serving is recorded and
stopped at once: none may."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

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
        "demo": ["--steps", "10"],
        "lessons": ["--only", "ema", "--no-animations"]}
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


LAB_RUNNER = r"""
import contextlib, io, json, sys, traceback
from descentlab.cli import main
from descentlab.lab.live import server
started = []

def never(self, *args, **kwargs):  # a server got as far as serving: record it and stop it at once
    started.append(list(self.server_address[:2]))
    raise KeyboardInterrupt

server.LabServer.serve_forever = never
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    except BaseException:
        code, err = -1, io.StringIO(traceback.format_exc())
    results.append([code, err.getvalue()])
print(json.dumps({"results": results, "started": started}))
"""

#: addresses no machine listens on: malformed, out of range, reserved never to resolve (RFC 6761), or not ours
BAD_HOSTS = ["", " ", "a b", "256.1.1.1", "::1::", "lab.invalid", "1"]


@pytest.mark.slow
def test_lab_refuses_bad_flags_in_one_line_and_never_serves():
    flags, _ = _options("lab")
    assert sorted(flags) == ["--host", "--port", "--workers"]
    bad = {"--host": NASTY + BAD_HOSTS, "--port": NASTY + ["65536", "0x10", "8765.5"],
           "--workers": ["abc", "nan", "-1", "65", "1.5"]}  # 0..64
    cases, named = [], []
    for flag in flags:
        for value in bad[flag]:
            cases.append(["lab", "--no-browser", f"{flag}={value}"])
            named.append(flag)
    for args, flag in ((["--bogus"], "--bogus"), (["--hots", "127.0.0.1"], "--hots"), (["--port"], "--port"),
                       (["--no-browser=1"], "--no-browser"), (["--log=yes"], "--log"), (["extra"], "extra")):
        cases.append(["lab", "--no-browser", *args])
        named.append(flag)
    assert len(cases) <= 40
    done = subprocess.run([sys.executable, "-c", LAB_RUNNER, json.dumps(cases)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["started"] == []  # no case got as far as serving
    for args, flag, (code, err) in zip(cases, named, report["results"]):
        assert "Traceback" not in err, (args, err)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("descentlab lab: error: "), (args, code, err)
        assert flag in lines[0], (args, lines[0])
