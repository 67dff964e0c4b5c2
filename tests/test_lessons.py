"""The lesson book as a user builds it: every claim holds on the defaults, every page loads in Chromium."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from descentlab.cli import main
from descentlab.lab.lessons import LESSONS

IDS = ["gd-modes", "batch-size", "ema", "bias-correction", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop",
       "adam", "lr-decay", "saddle", "local-minima"]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    code = main(["lessons", "--out", str(out), "--no-animations"])
    return out, code


def test_every_lesson_is_there_and_every_claim_holds(book):
    out, code = book
    assert [lesson.id for lesson in LESSONS] == IDS
    entries = json.loads((out / "lessons.json").read_text())
    assert [e["id"] for e in entries] == IDS
    for e in entries:
        assert set(e) >= {"id", "title", "claim", "holds", "evidence"} and e["claim"] and e["evidence"]
        assert e["holds"] is True, (e["id"], [c for c in e["checks"] if not c["holds"]])
    assert code == 0


def test_pictures_are_real_images(book):
    out, _ = book
    for lesson in IDS:
        pngs = sorted((out / lesson).glob("*.png"))
        assert pngs, lesson
        pixels = np.asarray(Image.open(pngs[0]).convert("L"), dtype=float)
        assert pixels.std() > 10 and pixels.shape[1] >= 640, (lesson, pngs[0].name)


def test_pages_load_without_console_errors(book, browser, tmp_path):
    out, _ = book
    for page in [out / "index.html"] + [out / i / "index.html" for i in ("momentum", "saddle")]:
        dom, errors = browser.dom(page)
        assert errors == [] and "<h1>" in dom, page
    shot = tmp_path / "index.png"
    assert browser.screenshot(out / "index.html", shot) == []
    assert np.asarray(Image.open(shot).convert("L"), dtype=float).std() > 5


def test_a_failing_claim_exits_non_zero_naming_the_lesson(tmp_path, capsys, monkeypatch):
    from descentlab.lab.lessons import book as book_module

    lesson = next(x for x in book_module.LESSONS if x.id == "ema")
    broken = lesson.__class__(**{**lesson.__dict__, "run": lambda out, T, animate: ({}, [("made false", False)], [])})
    monkeypatch.setattr(book_module, "LESSONS", tuple(broken if x.id == "ema" else x for x in book_module.LESSONS))
    assert main(["lessons", "--out", str(tmp_path / "b"), "--only", "ema,rmsprop", "--no-animations"]) == 1
    assert "lesson 'ema' fails" in capsys.readouterr().err
    entries = json.loads((tmp_path / "b" / "lessons.json").read_text())
    assert [(e["id"], e["holds"]) for e in entries] == [("ema", False), ("rmsprop", True)]


@pytest.mark.slow
def test_the_korean_book_with_animations(tmp_path, browser):
    out = tmp_path / "ko"
    assert main(["lessons", "--out", str(out), "--lang", "ko"]) == 0
    entries = json.loads((out / "lessons.json").read_text())
    assert all(e["holds"] for e in entries) and "안장점" in (out / "saddle" / "index.html").read_text()
    gif = Image.open(out / "saddle" / "saddle.gif")
    assert gif.size[0] >= 640 and gif.n_frames > 10
    for lesson in IDS:
        dom, errors = browser.dom(out / lesson / "index.html")
        assert errors == [] and 'lang="ko"' in dom, lesson
