"""Korean text in the lab's pictures renders with a real CJK font (tools/run installs Debian's fonts-nanum as
root), not as empty boxes."""

from __future__ import annotations

import os
import warnings

import pytest


def test_korean_labels_render_without_missing_glyphs():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from descentlab.lab.lessons.fonts import cjk_family, font_context

    if cjk_family() is None:
        if os.geteuid() == 0:
            pytest.fail("no CJK font installed: tools/run installs Debian's fonts-nanum when run as root")
        pytest.skip("no CJK font installed and not root (apt-get install fonts-nanum)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with font_context():
            fig = Figure(figsize=(3, 1))
            fig.text(0.1, 0.5, "안장점에서 벗어나기 — 모멘텀")
            FigureCanvasAgg(fig).draw()
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing
