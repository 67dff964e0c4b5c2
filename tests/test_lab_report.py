"""The race report in a real browser (headless Chromium): loads without console errors, has the table and the
controls, draws the race, and its screenshot is not blank; it needs no network."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from descentlab.lab.race import race
from descentlab.lab.race_outputs import write_race_outputs


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("race")
    result = race("himmelblau", ["sgd", "adam"], steps=120, lr={"sgd": 0.01, "adam": 0.1}, tune=True,
                  grid=(0.001, 0.01, 0.1))
    paths = write_race_outputs(result, out, frames=10)
    return paths["report.html"]


def test_report_is_self_contained(report):
    text = report.read_text()
    assert not re.search(r"""(src|href)=["']https?://""", text)  # no CDN, no remote images
    assert text.count("data:image/") >= 3


def test_the_harness_sees_console_errors(browser, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><script>undefinedFunction();</script></body></html>")
    _, errors = browser.dom(page)
    assert errors, "a page with an uncaught error must be flagged (otherwise the next test proves nothing)"


def test_report_loads_without_errors_with_table_and_controls(browser, report):
    dom, errors = browser.dom(report)
    assert errors == []
    for needle in ('id="metrics"', 'id="play"', 'id="step"', 'id="show-0"', 'id="show-1"', "<canvas"):
        assert needle in dom
    assert 'data-drawn-step="120"' in dom  # the script ran and drew the race at the last step
    assert dom.count("<tr>") >= 1 + 4  # header + default and tuned rows of both optimizers


def test_report_screenshot_is_not_blank(browser, report, tmp_path):
    png = tmp_path / "shot.png"
    errors = browser.screenshot(report, png)
    assert errors == [] and png.exists()
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01
