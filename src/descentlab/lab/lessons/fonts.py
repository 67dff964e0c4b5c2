"""Fonts for the pictures: a CJK family after the default one, so Korean labels render (matplotlib falls back
glyph by glyph along ``font.family``). Debian: ``apt-get install fonts-noto-cjk`` (or ``fonts-nanum``)."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Iterator

CJK_FAMILIES = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "NanumBarunGothic", "UnDotum", "Malgun Gothic",
                "Apple SD Gothic Neo")


@lru_cache(maxsize=1)
def cjk_family() -> str | None:
    """The first installed font family that has Hangul, or ``None``."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    found = next((n for n in CJK_FAMILIES if n in names), None)
    if found is None:  # installed after matplotlib cached its font list: register the files directly
        for path in font_manager.findSystemFonts():
            if any(key in path for key in ("CJK", "Nanum", "NotoSansKR")):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        names = {f.name for f in font_manager.fontManager.ttflist}
        found = next((n for n in CJK_FAMILIES if n in names), None)
    return found


@contextlib.contextmanager
def font_context() -> Iterator[None]:
    """Draw with DejaVu Sans and, for Hangul, the installed CJK family."""
    import matplotlib

    family = cjk_family()
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"] + ([family] if family else [])}):
        yield
