"""The catalogue of lessons (texts in English and Korean, in the notes' terms) and the book builder."""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from descentlab.lab.lessons import experiments as E
from descentlab.outputs import write_text_atomically

NOTES = {"000": "000 — Gradient Descent, advanced (Momentum, RMSProp, Adam)",
         "001": "001 — mini-batch GD, exponentially weighted averages, Momentum, RMSProp, Adam, learning-rate decay",
         "002": "002 — why optimization is hard; GD family, NAG, Adagrad, Adadelta, RMSProp, Adam",
         "003": "003 — optimizers overview: escaping local minima, NAG's two stages, adaptive rates",
         "004": "004 — basics: initialisation, MSE, batch / stochastic / mini-batch"}


@dataclass(frozen=True)
class Lesson:
    id: str
    notes: tuple[str, ...]
    title: tuple[str, str]       # (en, ko)
    lead: tuple[str, str]        # what the lesson says, in the notes' terms
    cli: str                     # the command that reproduces (and varies) it
    run: Callable[..., Any]


L = Lesson
LESSONS: tuple[Lesson, ...] = (
    L("gd-modes", ("001", "004"), ("Batch, stochastic and mini-batch gradient descent",
                                   "배치, 확률적, 미니배치 경사하강법"),
      ("All three use the same rule w ← w − η g; they differ in how many samples g is computed on. Batch GD takes "
       "one smooth step per epoch, stochastic GD one noisy step per sample and loses vectorisation, mini-batch GD "
       "gets many steps per epoch at vectorised speed.",
       "세 방법 모두 같은 규칙 w ← w − η g를 쓰고, g를 몇 개의 샘플로 계산하느냐만 다르다. 배치 경사하강법은 에폭마다 "
       "매끄러운 스텝 하나, 확률적 경사하강법은 샘플마다 요동치는 스텝 하나를 밟으며 벡터화를 잃는다. 미니배치 "
       "경사하강법은 벡터화된 속도로 에폭마다 여러 스텝을 밟는다."),
      "descentlab train digits --model logistic --optimizer sgd --lr 0.5 --batch-size full,1,64 --epochs 8 --out runs/modes",
      E.gd_modes),
    L("batch-size", ("001",), ("Choosing the mini-batch size", "미니배치 크기 고르기"),
      ("The notes' rule: with m ≤ 2000 samples use the whole set; otherwise a power of two (64 to 512 typically) "
       "that fits in memory. descentlab measures the candidates on the real model and says which it chose and why.",
       "노트의 규칙: 샘플이 m ≤ 2000개면 전체를 쓰고, 그보다 많으면 메모리에 맞는 2의 거듭제곱 (보통 64~512)을 쓴다. "
       "descentlab은 실제 모델에서 후보들을 측정하고 무엇을 왜 골랐는지 말한다."),
      "python -c \"import descentlab, torch; print(descentlab.suggest_batch_size(torch.nn.Linear(64, 10), "
      "torch.randn(64, 64), torch.randint(0, 10, (64,)), torch.nn.functional.cross_entropy, n_samples=60000).reason)\"",
      E.batch_size),
    L("ema", ("001",), ("Exponentially weighted averages", "지수 가중 이동 평균"),
      ("v_t = β v_{t−1} + (1 − β) θ_t averages over roughly the last 1/(1 − β) values with one number of memory: "
       "β = 0.9 ≈ 10 days, 0.98 ≈ 50, 0.5 ≈ 2. A larger β is smoother and later.",
       "v_t = β v_{t−1} + (1 − β) θ_t는 숫자 하나의 메모리로 대략 최근 1/(1 − β)개의 값을 평균한다: β = 0.9 ≈ 10일, "
       "0.98 ≈ 50일, 0.5 ≈ 2일. β가 클수록 매끄럽지만 늦다."),
      "descentlab schedules --out runs/ema   # and descentlab.pictures.temperature_ema_figure", E.ema_lesson),
    L("bias-correction", ("001",), ("Bias correction", "편향보정"),
      ("Starting from v₀ = 0 the average is far too small in its first steps; dividing by 1 − βᵗ fixes the start. "
       "Adam corrects both of its averages; without it its first steps are the wrong size.",
       "v₀ = 0에서 시작하면 처음 몇 스텝의 평균은 너무 작다. 1 − βᵗ로 나누면 시작이 바로잡힌다. Adam은 두 평균을 "
       "모두 보정하며, 보정이 없으면 처음 스텝의 크기가 틀어진다."),
      "descentlab race bowl --optimizers adam,adam@raw --opt adam@raw:bias_correction=false --lr adam=0.01,adam@raw=0.01 "
      "--steps 60 --out runs/bias", E.bias_correction),
    L("momentum", ("000", "001", "002"), ("Momentum", "모멘텀"),
      ("Momentum steps along an exponentially weighted average of the gradients: across a ravine the gradients "
       "alternate and cancel, along it they add up — less zig-zag, and rates at which plain GD diverges.",
       "모멘텀은 기울기의 지수 가중 이동 평균을 따라 움직인다. 골짜기를 가로지르는 기울기는 번갈아 상쇄되고, 골짜기를 "
       "따라가는 기울기는 더해진다. 지그재그가 줄고, 경사하강법이 발산하는 학습률도 쓸 수 있다."),
      "descentlab race ravine --optimizers sgd,momentum --lr sgd=0.45,momentum=0.45 --steps 150 --out runs/momentum",
      E.momentum),
    L("nesterov", ("002", "003"), ("Nesterov accelerated gradient (NAG)", "NAG (Nesterov Accelerated Gradient)"),
      ("NAG takes a step in two stages: first jump along the accumulated momentum, then compute the gradient at "
       "that look-ahead point and correct. Seeing the slope ahead, it brakes before the minimum.",
       "NAG는 한 스텝을 두 단계로 밟는다: 먼저 누적된 모멘텀만큼 이동하고, 그 미리 간 지점에서 기울기를 계산해 "
       "수정한다. 앞의 경사를 보기 때문에 최솟값 앞에서 속도를 줄인다."),
      "descentlab race ravine --optimizers momentum@sum,nesterov --opt momentum@sum:form=sum "
      "--lr momentum@sum=0.05,nesterov=0.05 --steps 200 --out runs/nag", E.nesterov),
    L("adagrad", ("002", "003"), ("Adagrad", "Adagrad"),
      ("Adagrad divides each coordinate's step by the root of the sum of its squared gradients: frequently "
       "moved coordinates slow down. The sum only grows, so the step shrinks towards zero — its weakness.",
       "Adagrad는 좌표마다 지금까지의 기울기 제곱합의 제곱근으로 스텝을 나눈다. 많이 움직인 좌표는 느려진다. 그 합은 "
       "커지기만 하므로 스텝이 0으로 줄어든다 — 이것이 약점이다."),
      "descentlab race bowl --optimizers adagrad,rmsprop --lr adagrad=0.5,rmsprop=0.01 --steps 300 --out runs/adagrad",
      E.adagrad),
    L("adadelta", ("002",), ("Adadelta", "Adadelta"),
      ("Adadelta repairs Adagrad: exponentially weighted averages of g² and of the past steps replace the sum, and "
       "their ratio sets the step's size and units — the pure algorithm has no learning rate.",
       "Adadelta는 Adagrad를 고친다: 합 대신 g²과 지난 스텝들의 지수 가중 이동 평균을 쓰고, 그 비율이 스텝의 크기와 "
       "단위를 정한다 — 순수한 알고리즘에는 학습률이 없다."),
      "descentlab race ravine --optimizers adadelta --steps 500 --out runs/adadelta", E.adadelta),
    L("rmsprop", ("000", "001", "002"), ("RMSProp", "RMSProp"),
      ("RMSProp divides the gradient by the root of an exponentially weighted average of g²: steep directions "
       "are damped, flat ones sped up. The notes' worked example is corrected here.",
       "RMSProp은 기울기를 g²의 지수 가중 이동 평균의 제곱근으로 나눈다. 가파른 방향은 누르고 평평한 방향은 "
       "빠르게 한다. 노트의 계산 예제를 여기서 바로잡는다."),
      "descentlab race ravine --optimizers sgd,rmsprop --lr sgd=0.01,rmsprop=0.01 --steps 120 --out runs/rmsprop",
      E.rmsprop),
    L("adam", ("000", "001", "002"), ("Adam", "Adam"),
      ("Adam is momentum plus RMSProp with bias correction: m̂ / √v̂ is about ±1 per coordinate whatever the "
       "gradient's scale, so the step is about η.",
       "Adam은 모멘텀과 RMSProp을 합치고 편향보정을 한다. m̂ / √v̂는 기울기의 크기와 상관없이 좌표마다 약 ±1이라 "
       "스텝은 약 η이다."),
      "descentlab race ravine --optimizers adam,sgd --lr adam=0.05,sgd=0.05 --steps 300 --out runs/adam", E.adam),
    L("lr-decay", ("001",), ("Learning-rate decay", "학습률 감쇠"),
      ("With mini-batch (noisy) gradients a fixed rate keeps wandering around the minimum; decaying the rate "
       "(η₀ / (1 + decay·t), γᵗ η₀, …) shrinks the wandering.",
       "미니배치의 (잡음 섞인) 기울기로는 고정된 학습률이 최솟값 주변을 계속 헤맨다. 학습률을 감쇠하면 "
       "(η₀ / (1 + decay·t), γᵗ η₀, …) 헤매는 폭이 줄어든다."),
      "descentlab race ravine --optimizers sgd --lr sgd=0.2 --noise 2 --seed 1 --steps 400 --out runs/decay "
      "# schedules: descentlab.lab.race.race(..., schedules={'sgd@exp': exponential(0.2, 0.99)})", E.lr_decay),
    L("saddle", ("002",), ("Saddle points", "안장점"),
      ("At a saddle point the gradient vanishes although it is no minimum; near its ridge the gradient that points "
       "the way out is tiny. Methods that divide by the gradient's size leave sooner.",
       "안장점에서는 최솟값이 아닌데도 기울기가 0이 된다. 능선 근처에서는 빠져나가는 방향의 기울기가 아주 작다. "
       "기울기의 크기로 나누는 방법이 더 빨리 벗어난다."),
      "descentlab race saddle --steps 500 --out runs/saddle", E.saddle),
    L("local-minima", ("002", "003"), ("Local minima", "지역최저점 (local minimum)"),
      ("Plain gradient descent stops in the first minimum it rolls into. Momentum carries speed over small "
       "bumps and can reach a lower, global minimum.",
       "경사하강법은 처음 굴러 들어간 최저점에서 멈춘다. 모멘텀은 속도를 이어 작은 언덕을 넘어 더 낮은 "
       "전역최저점에 도달할 수 있다."),
      "descentlab race double_well --optimizers sgd,momentum@sum --opt momentum@sum:form=sum "
      "--lr sgd=0.1,momentum@sum=0.1 --steps 300 --out runs/wells", E.local_minima),
)


@dataclass
class LessonResult:
    lesson: Lesson
    holds: bool
    checks: list[tuple[str, bool]]
    evidence: dict[str, Any]
    pictures: list[tuple[str, str]]

    def json(self, lang: str) -> dict[str, Any]:
        k = 1 if lang == "ko" else 0
        return {"id": self.lesson.id, "title": self.lesson.title[k],
                "claim": " ".join(text for text, _ in self.checks), "holds": self.holds,
                "checks": [{"claim": text, "holds": ok} for text, ok in self.checks], "evidence": self.evidence}


def _plain(value: Any) -> Any:
    """JSON-safe numbers (numpy scalars, tuples, non-finite floats as strings)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if np.isfinite(v) else str(v)
    return value


def run_lesson(lesson: Lesson, out: Path, lang: str = "en", animate: bool = True) -> LessonResult:
    """Run one lesson's experiment into ``out`` and check its claim."""
    T = (lambda en, ko: ko) if lang == "ko" else (lambda en, ko: en)
    out.mkdir(parents=True, exist_ok=True)
    evidence, checks, pictures = lesson.run(out, T, animate)
    checks = [(text, bool(ok)) for text, ok in checks]
    return LessonResult(lesson, all(ok for _, ok in checks), checks, _plain(evidence), pictures)


_STYLE = """body{font-family:system-ui,'Noto Sans CJK KR','NanumGothic',sans-serif;max-width:1100px;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.45}img{max-width:100%}pre,code{background:#f5f5f5;padding:2px 5px}
pre{padding:.6em;white-space:pre-wrap}.ok{color:#0a0}.fail{color:#c00}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top}th{background:#f3f3f3}
.card{border:1px solid #ddd;padding:.4em 1em;margin:.8em 0}"""

WORDS = {"en": {"book": "descentlab: the lesson book", "claim": "Claim", "holds": "holds", "fails": "FAILS",
                "evidence": "The numbers", "pictures": "Pictures", "cli": "Reproduce and vary it",
                "notes": "From the notes", "back": "← all lessons",
                "intro": "Each lesson states a claim from the lecture notes, runs an experiment whose defaults make "
                         "the point, and checks the claim as an assertion while this book is built."},
         "ko": {"book": "descentlab: 레슨 북", "claim": "주장", "holds": "성립", "fails": "실패",
                "evidence": "측정값", "pictures": "그림", "cli": "재현하고 바꿔 보기", "notes": "출처 노트",
                "back": "← 모든 레슨",
                "intro": "각 레슨은 강의 노트의 주장을 말하고, 기본값만으로 요점이 드러나는 실험을 돌리며, 이 책을 만들 때 "
                         "그 주장을 단언(assertion)으로 확인한다."}}


def _page(result: LessonResult, lang: str) -> str:
    w, k = WORDS[lang], (1 if lang == "ko" else 0)
    lesson = result.lesson
    checks = "".join(f'<li class="{"ok" if ok else "fail"}">{"✔" if ok else "✘"} {html.escape(text)}</li>'
                     for text, ok in result.checks)
    pics = "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
                   "</figcaption></figure>" for name, cap in result.pictures)
    evidence = html.escape(json.dumps(result.evidence, ensure_ascii=False, indent=1))
    notes = ", ".join(html.escape(NOTES[n]) for n in lesson.notes)
    state = f'<b class="ok">{w["holds"]}</b>' if result.holds else f'<b class="fail">{w["fails"]}</b>'
    return f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<title>{html.escape(lesson.title[k])}</title><style>{_STYLE}</style></head><body>
<p><a href="../index.html">{w["back"]}</a></p><h1>{html.escape(lesson.title[k])}</h1>
<p>{html.escape(lesson.lead[k])}</p><p><i>{w["notes"]}: {notes}</i></p>
<h2>{w["claim"]} — {state}</h2><ul>{checks}</ul>
<h2>{w["pictures"]}</h2>{pics}
<h2>{w["evidence"]}</h2><pre>{evidence}</pre>
<h2>{w["cli"]}</h2><pre>{html.escape(lesson.cli)}</pre></body></html>
"""


def build_book(out: str | Path, lang: str = "en", *, only: list[str] | None = None, animate: bool = True,
               log: Callable[[str], None] | None = None) -> list[LessonResult]:
    """Write ``index.html``, one folder per lesson and ``lessons.json`` into ``out``; return the results
    (the caller decides what a failing claim means; the CLI exits non-zero naming it)."""
    if lang not in WORDS:
        raise ValueError(f"lang must be 'en' or 'ko', got {lang!r}")
    known = [lesson.id for lesson in LESSONS]
    for name in only or []:
        if name not in known:
            raise ValueError(f"unknown lesson {name!r}; lessons: {', '.join(known)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if lang == "ko":
        from descentlab.lab.lessons.fonts import cjk_family

        if cjk_family() is None and log is not None:
            log("warning: no CJK font found (Debian: apt-get install fonts-noto-cjk); Korean labels in the "
                "pictures will show as boxes")
    results = []
    for lesson in LESSONS:
        if only and lesson.id not in only:
            continue
        folder = out / lesson.id
        if folder.exists():
            shutil.rmtree(folder)
        result = run_lesson(lesson, folder, lang, animate)
        write_text_atomically(folder / "index.html", _page(result, lang))
        results.append(result)
        if log is not None:
            log(f"{'holds' if result.holds else 'FAILS'}  {lesson.id}: "
                + "; ".join(t for t, ok in result.checks if not ok or result.holds)[:160])
    w, k = WORDS[lang], (1 if lang == "ko" else 0)
    cards = "".join(
        f'<div class="card"><h2><a href="{r.lesson.id}/index.html">{html.escape(r.lesson.title[k])}</a> '
        f'<span class="{"ok" if r.holds else "fail"}">{"✔" if r.holds else "✘"}</span></h2>'
        f"<p>{html.escape(r.lesson.lead[k])}</p>"
        + (f'<a href="{r.lesson.id}/index.html"><img src="{r.lesson.id}/{r.pictures[0][0]}" '
           f'alt="{html.escape(r.lesson.title[k])}" style="max-height:220px"></a>' if r.pictures else "")
        + "</div>" for r in results)
    index = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{w["book"]}</title>'
             f"<style>{_STYLE}</style></head><body><h1>{w['book']}</h1><p>{w['intro']}</p>{cards}</body></html>\n")
    write_text_atomically(out / "index.html", index)
    write_text_atomically(out / "lessons.json", json.dumps([r.json(lang) for r in results], ensure_ascii=False,
                                                           indent=1) + "\n")
    return results
