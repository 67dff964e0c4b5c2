"""``descentlab lessons --out DIR [--lang en|ko] [--only ID,…] [--no-animations]``: the lesson book — every
lesson of the notes as a claim checked while the book is built; exits 1 naming any lesson whose claim fails."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lessons", help="the lesson book: each lesson's claim, experiment, pictures, proof")
    p.add_argument("--out", required=True, help="output folder (index.html, one folder per lesson, lessons.json)")
    p.add_argument("--lang", choices=("en", "ko"), default="en", help="en (default) or ko, the notes' language")
    p.add_argument("--only", help="ID,… build only these lessons")
    p.add_argument("--no-animations", action="store_true", help="skip the GIFs (faster)")
    p.set_defaults(func=run, needs=("matplotlib", "sklearn"))


def run(args: argparse.Namespace) -> int:
    from descentlab.lab.lessons import build_book
    from descentlab.lab.lessons.book import LESSONS
    from descentlab.lab.options import check_name

    started = time.perf_counter()
    only = None
    if args.only is not None:  # checked before anything is written
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        if not only:
            raise ValueError(f"--only must name at least one lesson (ID,…), got {args.only!r}; lessons: "
                             f"{', '.join(lesson.id for lesson in LESSONS)}")
        for name in only:
            try:
                check_name("lesson", name, [lesson.id for lesson in LESSONS])
            except ValueError as err:
                raise ValueError(f"--only: {err}") from None
    results = build_book(Path(args.out), args.lang, only=only, animate=not args.no_animations, log=print)
    failed = [r.lesson.id for r in results if not r.holds]
    print(f"wrote {Path(args.out) / 'index.html'} and lessons.json: {len(results) - len(failed)} of {len(results)} "
          f"claims hold ({time.perf_counter() - started:.0f} s)")
    if failed:
        for r in results:
            if not r.holds:
                bad = [t for t, ok in r.checks if not ok]
                print(f"descentlab lessons: claim of lesson {r.lesson.id!r} fails: {'; '.join(bad)}", file=sys.stderr)
        return 1
    return 0
