"""The live lab's API (descentlab.lab.live): the runs are race()'s, bad requests get HTTP 400 naming the culprit
with the allowed values, the server listens on 127.0.0.1 by default, typed f(x, y) is parsed by a whitelist and
differentiated exactly, and the landscapes' hand-written gradients are autograd's."""

from __future__ import annotations

import json
import os
import math
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import numpy as np
import pytest
import torch

from descentlab.lab.landscapes import LANDSCAPES
from descentlab.lab.live import api, make_server
from descentlab.lab.live.expression import ExpressionError, Formula
from descentlab.lab.live.problems import GRADIENTS, builtin
from descentlab.lab.race import DEFAULT_OPTIMIZERS, race


@pytest.fixture(scope="module")
def server():
    srv = make_server()  # the defaults: 127.0.0.1, a free port
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(server, path: str, body, *, raw: bytes | None = None, headers: dict | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = Request(server.url.rstrip("/") + path, data=data, method="POST",
                  headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urlopen(req, timeout=120) as res:
            return res.status, json.loads(res.read())
    except HTTPError as err:
        return err.code, json.loads(err.read())


# -- correctness -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("landscape", ["ravine", "rosenbrock", "himmelblau"])
def test_runs_are_those_of_race(server, landscape):
    status, answer = post(server, "/api/race", {"landscape": landscape, "steps": 300,
                                                "optimizers": [{"name": n} for n in DEFAULT_OPTIMIZERS]})
    assert status == 200
    direct = race(landscape, DEFAULT_OPTIMIZERS, steps=300)
    assert [r["name"] for r in answer["runs"]] == list(DEFAULT_OPTIMIZERS)
    for run, racer in zip(answer["runs"], direct.racers):
        assert len(run["path"]) == len(racer.points)  # a diverged run stops at the same step
        np.testing.assert_allclose(run["path"], racer.points, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(run["f"], racer.values, rtol=1e-9, atol=1e-12)
        assert run["steps_to_tol"] == racer.steps_to_tol and run["diverged"] == racer.diverged
        assert run["nearest_minimum"] == pytest.approx(list(racer.minimum_xy))
        assert run["lr"] == racer.lr


def test_options_schedules_noise_and_a_second_racer_match_race():
    from descentlab.schedules import exponential

    body = {"landscape": "ravine", "steps": 200, "start": [-3.0, 1.0], "noise": 0.3, "seed": 4,
            "optimizers": [{"name": "momentum", "options": {"lr": 0.05, "form": "sum"}},
                           {"name": "adam", "options": {"lr": 0.05, "betas": [0.8, 0.99]},
                            "schedule": {"name": "exponential", "options": {"gamma": 0.99}}}]}
    answer = api.race(body, cache=None)
    for run, key, kwargs in [
            (answer["runs"][0], "momentum@sum", {"lr": {"momentum@sum": 0.05}, "options": {"momentum@sum": {"form": "sum"}}}),
            (answer["runs"][1], "adam", {"options": {"adam": {"betas": (0.8, 0.99)}},
                                         "schedules": {"adam": exponential(0.05, 0.99)}})]:
        direct = race("ravine", [key], steps=200, start=(-3.0, 1.0), noise=0.3, seed=4, **kwargs).racers[0]
        np.testing.assert_allclose(run["path"], direct.points, rtol=1e-9, atol=1e-12)
    rates = answer["runs"][1]["lr_per_step"]
    assert rates[:3] == pytest.approx([0.05, 0.05 * 0.99, 0.05 * 0.99**2], rel=1e-5)


def test_state_and_effective_step():
    answer = api.race({"landscape": "bowl", "steps": 50, "optimizers": ["adam", "sgd"]}, cache=None)
    adam, sgd = answer["runs"]
    assert set(adam["state"]) == {"exp_avg", "exp_avg_sq"} and adam["state_names"]["exp_avg_sq"] == "v"
    assert len(adam["state"]["exp_avg"]) == 50 and sgd["state"] == {}
    # SGD's effective step is its rate; Adam's first step is lr / |g| per coordinate (m̂/√v̂ = sign g)
    assert np.allclose(sgd["effective_step"], 0.01, rtol=1e-5)
    g0 = np.array(adam["gradient"][0])
    assert np.allclose(adam["effective_step"][0], 0.001 / np.abs(g0), rtol=1e-4)
    m1 = (1 - 0.9) * g0  # m after one step
    assert np.allclose(adam["state"]["exp_avg"][0], m1, rtol=1e-5)


def test_only_the_changed_run_is_recomputed(server):
    body = {"landscape": "saddle", "steps": 100, "optimizers": [{"name": n} for n in DEFAULT_OPTIMIZERS]}
    post(server, "/api/race", body)
    body["optimizers"][3] = {"name": "adagrad", "options": {"lr": 0.123}}
    status, answer = post(server, "/api/race", body)
    assert status == 200 and (answer["computed"], answer["cached"]) == (1, 6)
    assert answer["runs"][3]["lr"] == 0.123


def test_the_same_optimizer_twice_with_other_options():
    answer = api.race({"landscape": "ravine", "steps": 20, "optimizers": [
        {"name": "momentum"}, {"name": "momentum", "options": {"form": "sum"}, "label": "momentum@sum"}]}, cache=None)
    a, b = answer["runs"]
    assert (a["label"], b["label"]) == ("momentum", "momentum@sum") and a["path"] != b["path"]


def test_a_typed_formula_is_the_landscape():
    ravine = LANDSCAPES["ravine"]
    typed = api.race({"landscape": {"f": "0.1*x^2 + 2*y**2", "domain": [list(d) for d in ravine.domain]},
                      "start": list(ravine.start), "steps": 200, "optimizers": list(DEFAULT_OPTIMIZERS)}, cache=None)
    named = api.race({"landscape": "ravine", "steps": 200, "optimizers": list(DEFAULT_OPTIMIZERS)}, cache=None)
    for a, b in zip(typed["runs"], named["runs"]):
        np.testing.assert_allclose(a["path"], b["path"], rtol=1e-9, atol=1e-12)


def test_lesson_presets_run(server):
    with urlopen(server.url + "api/lessons?lang=ko", timeout=60) as res:
        lessons = json.loads(res.read())["lessons"]
    assert {l["id"] for l in lessons} >= {"momentum", "nesterov", "adam", "saddle", "local-minima"}
    momentum = next(l for l in lessons if l["id"] == "momentum")
    assert momentum["title"] == "모멘텀" and momentum["request"]["optimizers"][0]["options"] == {"lr": 0.45}
    for lesson in lessons:
        if lesson["request"] is not None:
            status, answer = post(server, "/api/race", lesson["request"])
            assert status == 200, (lesson["id"], answer)
            assert len(answer["runs"]) == len(lesson["request"]["optimizers"])
    # the momentum lesson's claim, live: GD's y flips sign at > 90 % of steps at η = 0.45, momentum's < 20 %;
    # the page opens on this lesson (meta's opening_lesson), under the ravine's caption, which says just that
    with urlopen(server.url + "api/meta", timeout=60) as res:
        assert json.loads(res.read())["opening_lesson"] == "momentum" == momentum["id"]
    assert momentum["request"]["landscape"] == "ravine"
    assert "zig-zag" in LANDSCAPES["ravine"].lesson and "momentum" in LANDSCAPES["ravine"].lesson
    _, answer = post(server, "/api/race", momentum["request"])
    flips = [np.mean(np.diff(np.sign(np.array(r["path"])[5:60, 1])) != 0) for r in answer["runs"]]
    assert flips[0] > 0.9 and flips[1] < 0.2


def test_meta_lists_every_registry_row_that_can_race(server):
    from descentlab.optim.registry import REGISTRY

    with urlopen(server.url + "api/meta", timeout=60) as res:
        meta = json.loads(res.read())
    names = [o["name"] for o in meta["optimizers"]] + [o["name"] for o in meta["unavailable"]]
    assert sorted(names) == sorted(REGISTRY)
    adam = next(o for o in meta["optimizers"] if o["name"] == "adam")
    options = {o["name"]: o for o in adam["options"]}
    assert options["lr"]["scale"] == "log" and options["lr"]["allowed"]["min"] == 0
    assert [p["allowed"]["max"] for p in options["betas"]["parts"]] == [1.0, 1.0]
    assert options["eps_placement"]["choices"] == ["inside", "outside"]
    assert any(s["label"] == "keras: Adam" for s in adam["settings"])
    assert {"impl", "foreach", "fused"}.isdisjoint(options)


# -- bad requests ---------------------------------------------------------------------------------------------

BAD = [
    ({"landscape": "ravnie", "optimizers": ["adam"]}, "landscape", "ravine"),
    ({"landscape": "ravine", "optimizers": [{"name": "adma"}]}, "optimizers[0].name", "adam"),
    ({"landscape": "ravine", "optimizers": [{"name": "adam", "options": {"beta": 0.9}}]},
     "optimizers[0].options.beta", "betas"),
    ({"landscape": "ravine", "optimizers": [{"name": "momentum", "schedule": {"name": "expo"}}]},
     "optimizers[0].schedule.name", "exponential"),
    ({"landscape": "ravine", "optimizers": ["adam"], "stpes": 10}, "stpes", "steps"),
]


@pytest.mark.parametrize("body, field, nearest", BAD)
def test_unknown_names_get_the_nearest(server, body, field, nearest):
    status, error = post(server, "/api/race", body)
    assert status == 400 and error["field"] == field
    assert nearest in error["suggestions"] and nearest in error["allowed"] and repr(nearest) in error["error"]


@pytest.mark.parametrize("body, field, allowed", [
    ({"landscape": "ravine", "optimizers": [{"name": "adam", "options": {"betas": [1.0, 0.9]}}]},
     "optimizers[0].options.betas", "[0, 1)"),
    ({"landscape": "ravine", "optimizers": [{"name": "sgd", "options": {"lr": -1}}]}, "optimizers[0].options.lr",
     "[0, inf)"),
    ({"landscape": "ravine", "optimizers": [{"name": "momentum", "options": {"form": "avg"}}]},
     "optimizers[0].options.form", "'ema', 'sum'"),
    ({"landscape": "ravine", "steps": 10**6, "optimizers": ["sgd"]}, "steps", "[1, 5000]"),
    ({"landscape": "ravine", "steps": 2.5, "optimizers": ["sgd"]}, "steps", "[1, 5000]"),
    ({"landscape": "ravine", "start": [0, "a"], "optimizers": ["sgd"]}, "start[1]", "[-6, 6]"),
    ({"landscape": "ravine", "start": [1e9, 0], "optimizers": ["sgd"]}, "start[0]", "[-15, 15]"),
    ({"landscape": "ravine", "optimizers": ["sgd"] * 13}, "optimizers", "1 to 12"),
    ({"landscape": "ravine", "optimizers": []}, "optimizers", "1 to 12"),
    ({"landscape": "ravine", "optimizers": ["muon"]}, "optimizers[0].name", "2-D"),
    ({"landscape": {"f": "__import__('os').system('true')"}, "optimizers": ["sgd"]}, "landscape.f",
     "Attribute is not allowed"),
    ({"landscape": {"f": "x.real"}, "optimizers": ["sgd"]}, "landscape.f", "Attribute is not allowed"),
    ({"landscape": {"f": "x**2", "domain": [[1, 0], [0, 1]]}, "optimizers": ["sgd"]}, "landscape.domain", "x0 < x1"),
    ([1, 2], "", "JSON object"),
])
def test_bad_values_name_the_range(server, body, field, allowed):
    status, error = post(server, "/api/race", body)
    assert status == 400, error
    assert error["field"] == field and allowed in error["error"]


def test_bad_bodies_routes_and_hosts(server):
    assert post(server, "/api/race", None, raw=b"{not json")[0] == 400
    assert post(server, "/api/race", None, raw=b" " * (api.MAX_BODY + 1))[0] == 413
    assert post(server, "/api/nothing", {})[0] == 404
    status, error = post(server, "/api/race", {"landscape": "bowl", "optimizers": ["sgd"]},
                         headers={"Host": "attacker.example:80"})
    assert status == 403 and error["field"] == "Host"  # a page elsewhere cannot reach it by DNS rebinding


# -- the server: loopback by default, the CLI ------------------------------------------------------------------

def _other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_loopback_by_default(server):
    host, port = server.server_address[:2]
    assert host == "127.0.0.1" and port > 0
    other = _other_address()
    if other is not None:
        with pytest.raises(OSError):
            socket.create_connection((other, port), timeout=2).close()
    from descentlab.cli import build_parser

    args = build_parser().parse_args(["lab"])
    assert (args.host, args.no_browser) == ("127.0.0.1", False)


def _gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_the_cli_serves_the_page_and_stops_on_ctrl_c():
    """Ctrl-C in a terminal signals the whole process group: the server and its worker process (one here:
    ``--workers 1``) stop cleanly, with no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "descentlab", "lab", "--port", "0", "--no-browser",
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("descentlab lab: serving http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[3]
        with urlopen(url, timeout=60) as res:
            page = res.read().decode()
            assert "default-src 'self'" in res.headers["Content-Security-Policy"]
        assert '<script src="/static/app.js"' in page and "http" not in page.replace("http-equiv", "")  # no CDN
        with urlopen(url + "static/app.js", timeout=60) as res:
            assert "https://" not in res.read().decode()
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers = [int(p) for p in children.read_text().split()] if children.exists() else []
        assert len(workers) >= 1 or not children.exists()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err
        deadline = time.monotonic() + 60
        for pid in workers:  # the worker is gone too (it exits when the server closes its pipe)
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _gone(pid), f"process {pid} still runs after the server stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


# -- f(x, y) and gradients -------------------------------------------------------------------------------------

FORMULAS = ["(1 - x)**2 + 100*(y - x^2)^2", "sin(3*x) * cos(2*y) + x**2/10", "exp(-x**2 - y**2) + sqrt(x**2 + y**2 + 1)",
            "log(1 + x**2) + abs(y)**1.5 + tanh(x*y)", "x**y + 2**x", "atan(x) / (1 + y**2) - cosh(y/3) + sinh(x/4)",
            "-x**2 + pi*e*y", "tan(x/3) + x^3 - 3*x*y"]


@pytest.mark.parametrize("text", FORMULAS)
def test_symbolic_gradient_is_autograds(text):
    formula = Formula(text)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0.2, 1.8, size=(20, 2)):
        X = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        Y = torch.tensor(y, dtype=torch.float64, requires_grad=True)
        value = formula.torch(X, Y)
        value.backward()
        assert formula.f(x, y) == pytest.approx(float(value.detach()), rel=1e-12, abs=1e-12)
        assert formula.grad(x, y) == pytest.approx((float(X.grad), float(Y.grad)), rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("text, fragment", [
    ("__import__('os')", "unknown function '__import__'"), ("x.__class__", "Attribute"), ("[x for x in y]", "ListComp"),
    ("lambda: 1", "Lambda"), ("x if y else 1", "IfExp"), ("open('f')", "unknown function 'open'"),
    ("z + 1", "unknown name 'z'"), ("sinn(x)", "Did you mean 'sin'"), ("'a' * 3", "not a number"), ("x[0]", "Subscript"),
    ("x; y", "not a formula"), ("x = 1", "not a formula"), ("", "empty"), ("x" * 500, "at most"),
    ("*".join(["x"] * 145), "gradient takes"), ("+".join(["x"] * 400), "at most"), ("sin(x, y)", "exactly one"),
    ("sin(x=1)", "exactly one"), ("x < y", "Compare"), ("x @ y", "BinOp"), ("True + x", "not a number"),
])
def test_unsafe_or_wrong_text_is_refused(text, fragment):
    with pytest.raises(ExpressionError, match=None) as caught:
        Formula(text)
    assert fragment in str(caught.value)


def test_huge_powers_are_floats_not_integers():
    start = time.perf_counter()
    formula = Formula("9**9**9 + x")
    assert math.isinf(formula.f(1.0, 1.0)) and time.perf_counter() - start < 1.0


@pytest.mark.parametrize("name", list(LANDSCAPES))
def test_hand_written_gradients_are_autograds(name):
    ls = LANDSCAPES[name]
    assert name in GRADIENTS, f"add {name}'s gradient to descentlab.lab.live.problems.GRADIENTS"
    (x0, x1), (y0, y1) = ls.domain
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(x0, x1, 50), rng.uniform(y0, y1, 50)])
    expected = ls.gradient(torch.tensor(points)).numpy()
    got = np.array([builtin(name).grad(float(x), float(y)) for x, y in points])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9 * np.abs(expected).max())


def test_lbfgs_races_through_a_closure_and_counts_its_evaluations():
    """L-BFGS steps as torch users call it, ``step(closure)``: on Rosenbrock it reaches the minimum in a few dozen
    steps that cost several gradient evaluations each (its line search), which the run reports."""
    answer = api.race({"landscape": "rosenbrock", "steps": 40,
                       "optimizers": [{"name": "lbfgs", "options": {"lr": 1.0}}, "adam"]}, cache=None)
    lbfgs, adam = answer["runs"]
    assert lbfgs["steps_to_tol"] is not None and lbfgs["final_f"] < 1e-8
    assert lbfgs["nearest_minimum"] == pytest.approx([1.0, 1.0])
    assert lbfgs["evaluations"] > 2 * lbfgs["steps_run"] and adam["evaluations"] == adam["steps_run"] == 40
    assert len(lbfgs["gradient"]) == lbfgs["steps_run"] == len(lbfgs["path"]) - 1
    g0 = GRADIENTS["rosenbrock"](*LANDSCAPES["rosenbrock"].start)
    assert lbfgs["gradient"][0] == pytest.approx(list(g0), rel=1e-5)  # the gradient the first step started from
    # torch.optim.LBFGS stepped directly with the same closure (the hand-written ∇f) takes the same path
    opt_param = torch.nn.Parameter(torch.tensor(LANDSCAPES["rosenbrock"].start, dtype=torch.float64))
    direct = torch.optim.LBFGS([opt_param], lr=1.0)
    points = [opt_param.detach().clone()]

    def closure():
        opt_param.grad = torch.tensor(GRADIENTS["rosenbrock"](*opt_param.tolist()), dtype=torch.float64)
        return float(LANDSCAPES["rosenbrock"](opt_param.detach()))

    for _ in range(lbfgs["steps_run"]):
        direct.step(closure)
        points.append(opt_param.detach().clone())
    np.testing.assert_allclose(lbfgs["path"], torch.stack(points).numpy(), rtol=1e-12, atol=1e-14)
