"""The lesson book: every lesson of the lecture notes as a claim, an experiment at defaults that make the
point, its pictures and numbers, and the CLI line that reproduces it. Each claim is an executable assertion;
:func:`build_book` checks them all and reports the ones that fail."""

from descentlab.lab.lessons.book import LESSONS, Lesson, LessonResult, build_book, run_lesson

__all__ = ["LESSONS", "Lesson", "LessonResult", "build_book", "run_lesson"]
