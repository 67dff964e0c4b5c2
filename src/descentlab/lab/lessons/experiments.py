"""The lessons' experiments: each returns ``(evidence, checks, pictures)`` — the measured numbers, the claim's
parts as ``(text, bool)`` pairs, and the pictures it drew into ``out``. The claim holds when every check does.

Every number comes from the real descentlab optimizers on the lab's landscapes, datasets and schedules;
:mod:`descentlab.lab.lessons.book` turns them into pages."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from descentlab.lab.landscapes import Landscape, get_landscape
from descentlab.lab.race import race
from descentlab.optim.registry import get_spec

Result = tuple[dict[str, Any], list[tuple[str, bool]], list[tuple[str, str]]]
Tr = Callable[[str, str], str]  # T(en, ko) -> the text in the book's language


def _figure(out: Path, name: str, draw: Callable[[Any], None], size: tuple[float, float] = (11, 4.2)) -> str:
    from descentlab.lab.lessons.fonts import font_context
    from descentlab.outputs import new_figure, save_figure_atomically

    with font_context():
        fig = new_figure(figsize=size)
        draw(fig)
        save_figure_atomically(fig, out / name)
    return name


def _race_pictures(result: Any, out: Path, stem: str, animate: bool, T: Tr) -> list[tuple[str, str]]:
    from descentlab.lab.animation import animate_race
    from descentlab.lab.plots import race_figure

    race_figure(result, out / f"{stem}.png")
    pics = [(f"{stem}.png", T("trajectories over the contours, and f − f* per step",
                              "등고선 위의 경로와 스텝별 f − f*"))]
    if animate:
        animate_race(result, out / f"{stem}.gif", frames=36, mp4=False)
        pics.append((f"{stem}.gif", T("the same race, step by step", "같은 경주를 스텝별로")))
    return pics


def _flips(values: np.ndarray) -> float:
    s = np.sign(values)
    return float((s[1:] != s[:-1]).mean())


# --- the notes' first lessons: how much data a step sees ---------------------------------------------------

def gd_modes(out: Path, T: Tr, animate: bool) -> Result:
    """Batch, stochastic and mini-batch GD on digits (softmax regression), same rate and epochs; the epoch
    time is the median of the epochs after the first (warm-up excluded), so one slow epoch cannot swing it."""
    from descentlab import datasets
    from descentlab.optim.sgd import SGD

    torch.set_num_threads(1)
    data = datasets.load("digits", seed=0)
    x, y = data.train
    lr, epochs = 0.5, 8
    curves, times, step_losses = {}, {}, {}
    for size in ("full", 64, 1):
        torch.manual_seed(0)
        model = torch.nn.Linear(x.shape[1], 10)
        opt = SGD(model.parameters(), lr=lr)
        b = len(x) if size == "full" else int(size)
        gen = torch.Generator().manual_seed(0)
        losses: list[float] = []
        secs: list[float] = []
        per_step: list[float] = []
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            start = time.perf_counter()
            for i in range(0, len(x), b):
                idx = order[i:i + b]
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                if len(per_step) < 400:
                    per_step.append(loss.item())
            secs.append(time.perf_counter() - start)
            with torch.no_grad():
                losses.append(float(torch.nn.functional.cross_entropy(model(x), y)))
        key = str(size)
        curves[key], times[key], step_losses[key] = losses, float(np.median(secs[1:])), per_step
        times[key + "_spread"] = float(np.max(secs[1:]) - np.min(secs[1:]))
    names = {"full": T("batch GD (all 1078)", "배치 경사하강법 (전체 1078개)"),
             "64": T("mini-batch GD (64)", "미니배치 경사하강법 (64)"),
             "1": T("stochastic GD (1)", "확률적 경사하강법 (1)")}

    def draw(fig: Any) -> None:
        a, b, c = fig.subplots(1, 3)
        for k in ("full", "64", "1"):
            a.plot(range(1, epochs + 1), curves[k], marker="o", label=names[k])
            b.bar(names[k].split(" (")[0], times[k] * 1000, yerr=times[k + "_spread"] * 500, capsize=4)
            c.plot(step_losses[k][:300], linewidth=0.8, label=names[k])
        a.set(xlabel=T("epoch", "에폭"), ylabel=T("training cost", "훈련 비용"), yscale="log",
              title=T(f"cost per epoch, lr {lr}", f"에폭별 비용, 학습률 {lr}"))
        b.set(ylabel=T("ms per epoch (median, warm-up excluded)", "에폭당 ms (중앙값, 워밍업 제외)"),
              title=T("wall time per epoch", "에폭당 실제 시간"))
        b.tick_params(axis="x", labelsize=7)
        c.set(xlabel=T("step", "스텝"), ylabel=T("mini-batch cost", "미니배치 비용"), yscale="log",
              title=T("cost of each step's batch", "스텝마다 본 배치의 비용"))
        a.legend(fontsize=7)
        c.legend(fontsize=7)

    pics = [(_figure(out, "gd_modes.png", draw, (14, 4.2)),
             T("the notes' picture, measured: cost per epoch, time per epoch, and the cost each step sees",
               "노트의 그림을 실제로 측정: 에폭별 비용, 에폭당 시간, 스텝마다의 비용"))]
    noise = {k: float(np.std(np.diff(step_losses[k][20:300]))) for k in ("64", "1")}  # step-to-step jitter
    evidence = {"lr": lr, "epochs": epochs, "final_cost": {k: round(v[-1], 4) for k, v in curves.items()},
                "ms_per_epoch": {k: round(times[k] * 1000, 2) for k in ("full", "64", "1")},
                "ms_spread": {k: round(times[k + "_spread"] * 1000, 2) for k in ("full", "64", "1")},
                "step_noise": {k: round(v, 3) for k, v in noise.items()}}
    checks = [
        (T("mini-batch ends each run lower than batch GD (more steps per epoch)",
           "미니배치가 배치 경사하강법보다 낮은 비용으로 끝난다 (에폭당 스텝이 많다)"),
         curves["64"][-1] < 0.5 * curves["full"][-1]),
        (T("an epoch of stochastic GD takes over 5× as long as one of mini-batch GD (no vectorisation)",
           "확률적 경사하강법의 에폭은 미니배치보다 5배 이상 오래 걸린다 (벡터화를 못 쓴다)"),
         times["1"] > 5 * times["64"]),
        (T("single-sample steps are far noisier than mini-batch steps",
           "샘플 하나짜리 스텝은 미니배치 스텝보다 훨씬 요동친다"), noise["1"] > 2 * noise["64"]),
    ]
    return evidence, checks, pics


def batch_size(out: Path, T: Tr, animate: bool) -> Result:
    """The notes' rule for choosing the mini-batch size, as :func:`suggest_batch_size` applies it."""
    from descentlab.data.batch_size import suggest_batch_size

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    loss = torch.nn.functional.cross_entropy
    small = suggest_batch_size(model, x, y, loss, n_samples=1797, repeats=1)
    large = suggest_batch_size(model, x, y, loss, n_samples=60000, repeats=2, candidates=(32, 64, 128, 256, 512))
    rows = large.measurements

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        ax.plot([m["batch_size"] for m in rows], [m["samples_per_second"] for m in rows], marker="o")
        ax.axvline(float(large.batch_size), color="tab:red", linestyle="--",
                   label=T(f"chosen: {large.batch_size}", f"선택: {large.batch_size}"))
        ax.set(xscale="log", xlabel=T("batch size (powers of two)", "배치 크기 (2의 거듭제곱)"),
               ylabel=T("samples per second", "초당 샘플 수"),
               title=T("60 000 samples: measured throughput of each candidate", "샘플 6만 개: 후보별 처리량 측정"))
        ax.set_xticks([m["batch_size"] for m in rows], [str(m["batch_size"]) for m in rows])
        ax.legend()

    pics = [(_figure(out, "batch_size.png", draw, (7, 4)), T("what the advice measured", "조언이 측정한 것"))]
    evidence = {"m=1797": small.batch_size, "m=1797 reason": small.reason, "m=60000": large.batch_size,
                "m=60000 reason": large.reason}
    chosen = large.batch_size
    checks = [(T("m = 1797 ≤ 2000: the whole set (batch GD)", "m = 1797 ≤ 2000: 전체 데이터 (배치 경사하강법)"),
               small.batch_size == "full"),
              (T("m = 60 000: a power of two between 32 and 512", "m = 60000: 32에서 512 사이의 2의 거듭제곱"),
               isinstance(chosen, int) and chosen & (chosen - 1) == 0 and 32 <= chosen <= 512)]
    return evidence, checks, pics


# --- averages ------------------------------------------------------------------------------------------------

def ema_lesson(out: Path, T: Tr, animate: bool) -> Result:
    from descentlab.averaging import ema
    from descentlab.pictures import temperature_ema_figure, temperature_series

    from descentlab.lab.lessons.fonts import font_context

    with font_context():
        temperature_ema_figure(out / "ema.png")
    v = ema([40.0, 49.0, 45.0], 0.98, bias_correction=False)
    theta = temperature_series()
    rough = {b: float(np.std(np.diff(ema(theta, b)))) for b in (0.5, 0.9, 0.98)}
    evidence = {"v1": round(float(v[0]), 6), "v2": round(float(v[1]), 6),
                "roughness (std of day-to-day change)": {str(b): round(r, 3) for b, r in rough.items()},
                "window 1/(1−β)": {"0.5": 2, "0.9": 10, "0.98": 50}}
    checks = [(T("the notes' example: v₁ = 0.8, v₂ = 1.764 (β = 0.98, 40 °F then 49 °F)",
                 "노트의 예: v₁ = 0.8, v₂ = 1.764 (β = 0.98, 40°F 다음 49°F)"),
               abs(v[0] - 0.8) < 1e-12 and abs(v[1] - 1.764) < 1e-12),
              (T("a larger β averages over more days: the curve gets smoother (β = 0.98 < 0.9 < 0.5)",
                 "β가 클수록 더 많은 날을 평균해 곡선이 매끄럽다 (β = 0.98 < 0.9 < 0.5)"),
               rough[0.98] < rough[0.9] < rough[0.5])]
    return evidence, checks, [("ema.png", T("EMAs of a year of daily temperatures", "1년간 일별 기온의 지수 가중 이동 평균"))]


def bias_correction(out: Path, T: Tr, animate: bool) -> Result:
    """The EMA's start, and Adam's first steps with and without bias correction."""
    from descentlab.averaging import ema
    from descentlab.optim.adam import Adam

    raw = ema([40.0, 49.0, 45.0], 0.98, bias_correction=False)
    fixed = ema([40.0, 49.0, 45.0], 0.98)
    steps = {}
    for corrected in (True, False):
        w = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
        opt = Adam([w], lr=0.01, bias_correction=corrected)
        trace = [3.0]
        for _ in range(60):
            opt.zero_grad()
            (w ** 2).sum().backward()
            opt.step()
            trace.append(float(w.detach()))
        steps[corrected] = np.abs(np.diff(trace))

    def draw(fig: Any) -> None:
        a, b = fig.subplots(1, 2)
        days = [1, 2, 3]
        a.plot(days, [40, 49, 45], "ko", label=T("temperature θ", "기온 θ"))
        a.plot(days, raw, "s-", label=T("v_t, no correction", "v_t, 보정 없음"))
        a.plot(days, fixed, "^-", label=T("v_t / (1 − βᵗ)", "v_t / (1 − βᵗ)"))
        a.set(xlabel=T("day", "일"), ylabel="°F", title=T("β = 0.98: the first days", "β = 0.98: 처음 며칠"))
        a.legend(fontsize=8)
        b.plot(steps[True], label=T("Adam, bias-corrected", "Adam, 편향보정"))
        b.plot(steps[False], label=T("Adam, no correction", "Adam, 보정 없음"))
        b.axhline(0.01, color="0.5", linestyle=":", label=T("η = 0.01", "η = 0.01"))
        b.set(xlabel=T("step", "스텝"), ylabel=T("|step size|", "|스텝 크기|"),
              title=T("Adam on w² from w = 3: the first steps", "w = 3에서 w²에 대한 Adam: 처음 스텝들"))
        b.legend(fontsize=8)

    pics = [(_figure(out, "bias_correction.png", draw), T("the start of an EMA, and of Adam", "EMA와 Adam의 시작"))]
    ratio = float(steps[False][0] / steps[True][0])
    evidence = {"v2 raw": round(float(raw[1]), 4), "v2 corrected": round(float(fixed[1]), 4),
                "Adam first step, corrected": round(float(steps[True][0]), 6),
                "Adam first step, uncorrected": round(float(steps[False][0]), 6), "ratio": round(ratio, 4)}
    checks = [(T("corrected v₂ = 1.764 / (1 − 0.98²) ≈ 44.55 °F, the raw v₂ = 1.764 is far below the data",
                 "보정한 v₂ = 1.764 / (1 − 0.98²) ≈ 44.55°F, 보정 없는 v₂ = 1.764는 데이터보다 한참 낮다"),
               abs(fixed[1] - 44.5455) < 1e-3 and raw[1] < 2),
              (T("without correction Adam's first step is (1 − β₁)/√(1 − β₂) ≈ 3.16 × η, with it η",
                 "보정이 없으면 Adam의 첫 스텝은 (1 − β₁)/√(1 − β₂) ≈ 3.16 × η, 보정하면 η"),
               abs(steps[True][0] - 0.01) < 1e-6 and abs(ratio - 0.1 / math.sqrt(0.001)) < 1e-3)]
    return evidence, checks, pics


# --- momentum and NAG ----------------------------------------------------------------------------------------

def momentum(out: Path, T: Tr, animate: bool) -> Result:
    lr = 0.45
    r = race("ravine", ["sgd", "momentum"], steps=150, lr={"sgd": lr, "momentum": lr})
    sgd, mom = r.racers
    over = race("ravine", ["sgd", "momentum"], steps=150, lr={"sgd": 0.6, "momentum": 0.6})
    pics = _race_pictures(r, out, "momentum", animate, T)
    evidence = {"lr": lr, "y sign flips, sgd": round(_flips(sgd.points[5:60, 1]), 3),
                "y sign flips, momentum": round(_flips(mom.points[5:60, 1]), 3),
                "at lr 0.6: sgd diverged": over.racers[0].diverged,
                "at lr 0.6: momentum final f": over.racers[1].final_f}
    checks = [(T("at η = 0.45 GD's y flips sign at > 90 % of steps (zig-zag), momentum's at < 20 %",
                 "η = 0.45에서 경사하강법의 y는 90 % 이상의 스텝에서 부호가 바뀌고 (지그재그), 모멘텀은 20 % 미만"),
               _flips(sgd.points[5:60, 1]) > 0.9 and _flips(mom.points[5:60, 1]) < 0.2),
              (T("at η = 0.6 GD diverges across the valley; momentum's averaged gradient still converges",
                 "η = 0.6에서 경사하강법은 발산하지만 모멘텀의 평균된 기울기는 여전히 수렴한다"),
               over.racers[0].diverged and over.racers[1].final_f < 1e-3)]
    return evidence, checks, pics


def nesterov(out: Path, T: Tr, animate: bool) -> Result:
    """NAG against heavy-ball momentum in the same (summed) form, same β and rate."""
    lr = 0.05
    r = race("ravine", ["momentum@sum", "nesterov"], steps=200, lr={"momentum@sum": lr, "nesterov": lr},
             options={"momentum@sum": {"form": "sum"}})
    hb, nag = r.racers
    overshoot = {x.name: float(max(0.0, x.points[:, 0].max())) for x in r.racers}
    pics = _race_pictures(r, out, "nesterov", animate, T)
    pics.append((_figure(out, "nesterov_lookahead.png", lambda fig: _lookahead(fig, T), (7, 5)),
                 T("NAG's two stages, drawn for the first steps", "NAG의 두 단계, 처음 몇 스텝")))
    evidence = {"lr": lr, "beta": 0.9, "overshoot past x = 0": {k: round(v, 4) for k, v in overshoot.items()},
                "steps to tol": {x.name: x.steps_to_tol for x in r.racers}}
    checks = [(T("from the same start NAG overshoots the minimum along the valley less than momentum",
                 "같은 출발점에서 NAG는 골짜기를 따라 최솟값을 모멘텀보다 덜 지나친다"),
               overshoot["nesterov"] < overshoot["momentum@sum"]),
              (T("and reaches the tolerance in fewer steps", "그리고 더 적은 스텝으로 허용오차에 닿는다"),
               nag.steps_to_tol is not None and (hb.steps_to_tol is None or nag.steps_to_tol < hb.steps_to_tol))]
    return evidence, checks, pics


def _lookahead(fig: Any, T: Tr) -> None:
    """Three NAG steps on the ravine: momentum jump to the look-ahead point, then the gradient correction."""
    from descentlab.lab.plots import draw_contours

    ls = get_landscape("ravine")
    ax = fig.subplots()
    draw_contours(ax, ls)
    lr, beta = 0.05, 0.9
    w = np.array(ls.start)
    a = np.zeros(2)
    seen = [w]
    for k in range(4):
        look = w - lr * beta * a
        g = ls.gradient(torch.tensor(look)).numpy()
        a = beta * a + g
        new = w - lr * a
        ax.annotate("", look, w, arrowprops=dict(arrowstyle="->", color="tab:blue", lw=1.6))
        ax.annotate("", new, look, arrowprops=dict(arrowstyle="->", color="tab:red", lw=1.6))
        ax.plot(*w, "ko", markersize=4)
        seen += [look, new]
        w = new
    ax.plot([], [], color="tab:blue", label=T("1: jump with the momentum (−ηβa)", "1단계: 모멘텀만큼 이동 (−ηβa)"))
    ax.plot([], [], color="tab:red", label=T("2: gradient at the look-ahead point", "2단계: 미리 간 지점의 기울기로 수정"))
    pts = np.array(seen)
    pad = 0.25 * max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    ax.set_xlim(pts[:, 0].min() - pad, pts[:, 0].max() + 3 * pad)
    ax.set_ylim(pts[:, 1].min() - pad, pts[:, 1].max() + pad)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(T("NAG, first four steps (η = 0.05, β = 0.9)", "NAG, 처음 네 스텝 (η = 0.05, β = 0.9)"))


# --- per-coordinate rates ------------------------------------------------------------------------------------

def _effective_rates(result: Any, ls: Landscape) -> dict[str, np.ndarray]:
    """|Δx| / |∂f/∂x| at each step: the rate each racer really used along x."""
    out = {}
    for r in result.racers:
        g = ls.gradient(torch.tensor(r.points[:-1])).numpy()[:, 0]
        out[r.name] = np.abs(np.diff(r.points[:, 0])) / np.maximum(np.abs(g), 1e-300)
    return out


def adagrad(out: Path, T: Tr, animate: bool) -> Result:
    """On a constant slope (the gradient never changes) Adagrad's step shrinks like η/√t; RMSProp's settles."""
    slope = Landscape("slope", "x + 2y", lambda x, y: x + 2 * y, ((-60, 5), (-120, 5)), (0.0, 0.0), (), None,
                      "a constant gradient")
    r = race(slope, ["adagrad", "rmsprop"], steps=300, lr={"adagrad": 0.1, "rmsprop": 0.1})
    steps = {x.name: np.abs(np.diff(x.points[:, 0])) for x in r.racers}

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        for name, v in steps.items():
            ax.plot(np.arange(1, len(v) + 1), v, label=f"{name} (η = 0.1)")
        t = np.arange(1, 301)
        ax.plot(t, 0.1 / np.sqrt(t), "k:", label="η / √t")
        ax.set(yscale="log", xlabel=T("step", "스텝"), ylabel=T("step size along x", "x 방향 스텝 크기"),
               title=T("a constant slope f = x + 2y: the same gradient at every step",
                       "일정한 기울기 f = x + 2y: 매 스텝 같은 기울기"))
        ax.legend()

    pics = [(_figure(out, "adagrad.png", draw, (7, 4)), T("Adagrad's step only shrinks; RMSProp's settles at η",
                                                         "Adagrad의 스텝은 줄기만 하고 RMSProp은 η에 자리 잡는다"))]
    a, s = steps["adagrad"], steps["rmsprop"]
    evidence = {"adagrad step: 1, 100, 300": [round(float(a[i]), 5) for i in (0, 99, 299)],
                "rmsprop step: 1, 100, 300": [round(float(s[i]), 5) for i in (0, 99, 299)]}
    checks = [(T("Adagrad's accumulated G only grows, so its step never grows and after 300 steps is 1/√300 of "
                 "its first (within 1 %)", "Adagrad의 누적 G는 커지기만 해서 스텝은 커지지 않고, 300스텝 뒤에는 "
                 "처음의 1/√300이다 (1 % 이내)"),
               bool(np.all(np.diff(a) <= 1e-12 * a[0])) and abs(a[299] / a[0] * math.sqrt(300) - 1) < 0.01),
              (T("RMSProp's average forgets: its step settles at η (within 5 % by step 300)",
                 "RMSProp의 평균은 잊어버리므로 스텝이 η에 자리 잡는다 (300스텝에서 5 % 이내)"),
               abs(s[299] / 0.1 - 1) < 0.05)]
    return evidence, checks, pics


def adadelta(out: Path, T: Tr, animate: bool) -> Result:
    ls = get_landscape("ravine")
    r = race(ls, ["adadelta"], steps=500)
    step = np.linalg.norm(np.diff(r.racers[0].points, axis=0), axis=1)
    pics = _race_pictures(r, out, "adadelta", False, T)
    evidence = {"lr": r.racers[0].lr, "step 1": float(step[0]), "step 100": float(step[99]),
                "final f": r.racers[0].final_f, "start f": float(r.racers[0].values[0])}
    evidence["step 200"] = float(step[199])
    checks = [(T("with η = 1 (no rate chosen) its first step is tiny (√ε-sized, < 0.01) and its steps grow by "
                 "themselves as the average of past steps grows (step 200 > 1.2 × step 1)",
                 "η = 1 (학습률을 고르지 않음)에서 첫 스텝은 아주 작고 (√ε 크기, 0.01 미만) 지난 스텝들의 평균이 "
                 "커지면서 스텝이 스스로 커진다 (200스텝 > 1.2 × 첫 스텝)"), step[0] < 0.01 and step[199] > 1.2 * step[0]),
              (T("and it keeps descending: f falls below a tenth of its start in 500 steps",
                 "계속 내려가 500스텝 안에 f가 처음의 1/10 아래로 떨어진다"),
               r.racers[0].final_f < 0.1 * r.racers[0].values[0])]
    return evidence, checks, pics


def rmsprop(out: Path, T: Tr, animate: bool) -> Result:
    from descentlab.optim.rmsprop import RMSprop

    w = torch.nn.Parameter(torch.tensor([0.8, 1.2, 0.5], dtype=torch.float64))
    opt = RMSprop([w], lr=0.01, alpha=0.9, eps_placement="inside", eps=1e-8)
    w.grad = torch.tensor([0.1, -0.3, 0.2], dtype=torch.float64)
    opt.step()
    got = [round(float(v), 6) for v in w.detach()]
    ls = get_landscape("ravine")
    r = race(ls, ["sgd", "rmsprop"], steps=120, lr={"sgd": 0.01, "rmsprop": 0.01})
    ratio = {}
    for x in r.racers:
        d = np.abs(np.diff(x.points[:10], axis=0)).mean(0)
        ratio[x.name] = float(d[1] / d[0])
    pics = _race_pictures(r, out, "rmsprop", False, T)
    evidence = {"worked example w": got, "first-steps |Δy| / |Δx|": {k: round(v, 3) for k, v in ratio.items()}}
    checks = [(T("the notes' example, corrected: w = [0.768377, 1.231623, 0.468377]",
                 "노트의 예제를 바로잡은 값: w = [0.768377, 1.231623, 0.468377]"),
               got == [0.768377, 1.231623, 0.468377]),
              (T("dividing by the RMS of the gradient evens the axes: GD's first steps are over 3× larger across "
                 "the valley than along it, RMSProp's about equal (within 2×)", "기울기의 RMS로 나누면 축이 고르게 "
                 "된다: 경사하강법의 처음 스텝은 골짜기를 가로질러 3배 이상 크고, RMSProp은 거의 같다 (2배 이내)"),
               ratio["sgd"] > 3 and 0.5 < ratio["rmsprop"] < 2)]
    return evidence, checks, pics


def adam(out: Path, T: Tr, animate: bool) -> Result:
    """Adam's step does not depend on the gradient's scale; GD's does."""
    base = get_landscape("ravine")
    scaled = Landscape("ravine×1000", "1000 (0.1 x² + 2 y²)", lambda x, y: 1000 * (0.1 * x**2 + 2 * y**2),
                       base.domain, base.start, base.minima, 0.0, base.lesson)
    a = race(base, ["adam", "sgd"], steps=300, lr={"adam": 0.05, "sgd": 0.05})
    b = race(scaled, ["adam", "sgd"], steps=300, lr={"adam": 0.05, "sgd": 0.05})
    gap = float(np.abs(a.racers[0].points - b.racers[0].points).max())
    pics = _race_pictures(a, out, "adam", animate, T)
    evidence = {"lr": 0.05, "max |Adam(f) − Adam(1000 f)| over the path": gap,
                "sgd on 1000 f diverged": b.racers[1].diverged, "adam final f": a.racers[0].final_f}
    checks = [(T("Adam follows the same path on f and on 1000·f (to 1e-3): m̂/√v̂ does not see the scale",
                 "Adam은 f와 1000·f에서 같은 경로를 간다 (1e-3 이내): m̂/√v̂는 크기를 보지 않는다"), gap < 1e-3),
              (T("GD at the same rate diverges on 1000·f", "같은 학습률의 경사하강법은 1000·f에서 발산한다"),
               b.racers[1].diverged and not b.racers[0].diverged)]
    return evidence, checks, pics


# --- the landscape's hard places and the rate over time ------------------------------------------------------

def lr_decay(out: Path, T: Tr, animate: bool) -> Result:
    from descentlab.schedules import exponential, inverse_time

    sigma = 2.0
    r = race("ravine", ["sgd", "sgd@exponential", "sgd@inverse_time"], steps=400, noise=sigma, seed=1,
             lr={"sgd": 0.2}, schedules={"sgd@exponential": exponential(0.2, 0.99),
                                         "sgd@inverse_time": inverse_time(0.2, 0.02)})
    tail = {x.name: float(np.mean(x.values[-100:])) for x in r.racers}
    pics = _race_pictures(r, out, "lr_decay", animate, T)
    evidence = {"noise σ": sigma, "mean f over the last 100 steps": {k: round(v, 5) for k, v in tail.items()}}
    checks = [(T("with noisy (mini-batch) gradients a fixed rate keeps wandering; both decays settle > 5× lower",
                 "잡음 섞인 (미니배치) 기울기에서 고정 학습률은 계속 헤매고, 두 감쇠는 5배 이상 낮게 자리 잡는다"),
               tail["sgd@exponential"] < 0.2 * tail["sgd"] and tail["sgd@inverse_time"] < 0.2 * tail["sgd"])]
    return evidence, checks, pics


def saddle(out: Path, T: Tr, animate: bool) -> Result:
    from descentlab.lab.race import DEFAULT_OPTIMIZERS

    r = race("saddle", DEFAULT_OPTIMIZERS, steps=500)
    esc = {x.name: x.escaped_at for x in r.racers}
    pics = _race_pictures(r, out, "saddle", animate, T)
    adaptive = [esc[n] for n in ("adagrad", "adadelta", "rmsprop", "adam")]
    plain = [esc[n] for n in ("sgd", "momentum", "nesterov")]
    evidence = {"escaped at step": esc, "diverged": [x.name for x in r.racers if x.diverged]}
    checks = [(T("at their default rates every method leaves the saddle, and none diverges",
                 "기본 학습률에서 모든 방법이 안장점을 벗어나고 발산하는 것은 없다"),
               None not in esc.values() and not any(x.diverged for x in r.racers)),
              (T("every adaptive method (Adagrad, Adadelta, RMSProp, Adam) escapes before every plain-gradient one",
                 "적응적 방법(Adagrad, Adadelta, RMSProp, Adam)은 모두 기울기만 쓰는 방법보다 먼저 벗어난다"),
               None not in esc.values()
               and max(s for s in adaptive if s is not None) < min(s for s in plain if s is not None))]
    return evidence, checks, pics


def local_minima(out: Path, T: Tr, animate: bool) -> Result:
    lr = 0.1
    r = race("double_well", ["sgd", "momentum@sum"], steps=300, lr={"sgd": lr, "momentum@sum": lr},
             options={"momentum@sum": {"form": "sum"}})
    sgd, mom = r.racers
    pics = _race_pictures(r, out, "local_minima", animate, T)
    evidence = {"lr": lr, "sgd ends at": sgd.minimum_xy, "sgd stuck in a local minimum": sgd.local_minimum,
                "momentum ends at": mom.minimum_xy, "momentum final f": mom.final_f}
    checks = [(T("GD from the right-hand start stops in the local minimum", "오른쪽에서 출발한 경사하강법은 지역최저점에 멈춘다"),
               sgd.local_minimum),
              (T("momentum at the same rate rolls over the bump into the global minimum",
                 "같은 학습률의 모멘텀은 언덕을 넘어 전역최저점에 도달한다"),
               r.landscape.is_global(mom.nearest_minimum) and mom.distance < 0.05)]
    return evidence, checks, pics
