"""The live lab's page in a real headless Chromium, driven through the DevTools protocol (a tiny websocket client
below, no extra package): the page loads with no console error, moving a control redraws the path (the SVG
path's ``d`` changes), clicking the map moves the start, the lesson picker loads a lesson as a preset, in
Korean too."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import numpy as np
import pytest

from conftest import CHROMIUM_FLAGS

pytestmark = pytest.mark.slow  # Chromium's start and the page's first races: ≈ 15-30 s on the 2-core machine


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames out (masked), frames in."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the DevTools websocket closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.decode(errors="replace"))
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text: str) -> None:
        data = text.encode()
        header = bytearray([0x81])
        if len(data) < 126:
            header.append(0x80 | len(data))
        elif len(data) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        mask = os.urandom(4)
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the DevTools websocket closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("the DevTools websocket was closed by Chromium")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()


class Page:
    """One Chromium tab: ``call(method, **params)``, ``js(expression)``, and every console error seen."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.next_id, self.errors, self.events = ws, 0, [], []

    def _note(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(json.dumps(params.get("args", []))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(params["entry"].get("text", "")[:500])

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note(message)

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


@pytest.fixture
def lab_server():
    from descentlab.lab.live import make_server

    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(chromium, lab_server):
    # Chromium's helper processes can outlive the browser by a moment and still write into the profile: a left
    # temporary folder is harmless, a teardown error on it is not
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                 "--remote-debugging-address=127.0.0.1", "--window-size=1300,1100", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            end = time.monotonic() + 60
            while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < end:
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            targets = json.loads(urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
            target = next(t for t in targets if t["type"] == "page")
            tab = Page(WebSocket(target["webSocketDebuggerUrl"]))
            for domain in ("Runtime", "Log", "Page"):
                tab.call(f"{domain}.enable")
            tab.url = lab_server.url
            tab.call("Page.navigate", url=lab_server.url + "?lesson=none")  # the default optimizers, as registered
            yield tab
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


PATH_D = "document.querySelector('.run-path[data-run=\"{i}\"]')?.getAttribute('d') || ''"


def test_a_moved_control_redraws_the_path(page):
    page.wait("document.querySelectorAll('.run-path').length === 7")
    page.wait("window.descentlabLab.requests >= 1 && !window.descentlabLab.inflight")
    before = page.js(PATH_D.format(i=0))
    f_before = page.js("document.querySelector('.f-line')?.getAttribute('d')")
    assert before.startswith("M") and before.count("L") == 500  # 501 points: the default 500 steps
    # the lr slider of the first card (sgd): log scale, moved right
    slider = "document.querySelector('.card[data-run=\"0\"] input[data-opt=\"lr\"]')"
    assert page.js(f"{slider}.dataset.scale") == "log"
    page.js(f"(() => {{ const s = {slider}; s.value = 850; s.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")
    page.wait(f"({PATH_D.format(i=0)}) !== {json.dumps(before)}")
    page.wait("!window.descentlabLab.inflight && !window.descentlabLab.pending")
    assert page.js("document.querySelector('.f-line')?.getAttribute('d')") != f_before
    assert page.js("window.descentlabLab.answer.cached") == 6  # only the moved optimizer was recomputed
    # a β of the focused card: the inner state panels are redrawn too
    page.js("document.querySelector('.card[data-run=\"6\"]').click()")
    page.wait("document.getElementById('focus-name').textContent === 'adam'")
    assert page.js("document.querySelectorAll('.state-plot').length") == 3  # m, v, effective step
    state_before = page.js("document.querySelector('.state-plot path:last-of-type').getAttribute('d')")
    beta = "document.querySelector('.card[data-run=\"6\"] input[data-opt=\"betas[0]\"]')"
    page.js(f"(() => {{ const s = {beta}; s.value = 300; s.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")
    page.wait(f"document.querySelector('.state-plot path:last-of-type').getAttribute('d') !== {json.dumps(state_before)}")
    assert page.errors == []


def test_click_moves_the_start_and_lessons_load_as_presets(page):
    page.wait("document.querySelectorAll('.run-path').length === 7 && !window.descentlabLab.inflight")
    before = page.js(PATH_D.format(i=2))
    box = page.js("(() => { const b = document.getElementById('overlay').getBoundingClientRect(); "
                  "return [b.left, b.top, b.width, b.height]; })()")
    x, y = box[0] + box[2] * 0.75, box[1] + box[3] * 0.2
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    page.wait(f"({PATH_D.format(i=2)}) !== {json.dumps(before)}")
    start = page.js("window.descentlabLab.answer.start")
    assert start[0] == pytest.approx(-5 + 0.75 * 10, abs=0.1) and start[1] == pytest.approx(-2 + 0.8 * 4, abs=0.1)
    # a lesson of the book as a preset: two racers on the ravine at η = 0.45
    page.wait("document.querySelector('#lesson option[value=\"momentum\"]') !== null")
    page.js("(() => { const s = document.getElementById('lesson'); s.value = 'momentum'; "
            "s.dispatchEvent(new Event('change')); })()")
    page.wait("window.descentlabLab.answer && window.descentlabLab.answer.runs.length === 2 && "
              "window.descentlabLab.answer.steps === 150")
    assert page.js("window.descentlabLab.answer.runs.map(r => r.lr)") == [0.45, 0.45]
    assert page.js("document.querySelectorAll('.run-path').length") == 2
    # in Korean: the picker's lessons and the lead are the book's Korean texts
    page.js("(() => { const s = document.getElementById('lang'); s.value = 'ko'; s.dispatchEvent(new Event('change')); })()")
    page.wait("document.querySelector('#lesson option[value=\"momentum\"]')?.textContent === '모멘텀'")
    page.js("(() => { const s = document.getElementById('lesson'); s.value = 'adam'; "
            "s.dispatchEvent(new Event('change')); })()")
    page.wait("document.getElementById('lead').textContent.includes('편향보정')")
    page.wait("window.descentlabLab.answer.steps === 300 && !window.descentlabLab.inflight")
    assert page.errors == []


def test_a_typed_formula_races(page):
    page.wait("document.querySelectorAll('.run-path').length === 7 && !window.descentlabLab.inflight")
    page.js("(() => { const s = document.getElementById('landscape'); s.value = '__typed__'; "
            "s.dispatchEvent(new Event('change')); document.getElementById('formula').value = '(x - 1)^2 + 4*(y + 2)^2'; "
            "document.getElementById('apply-formula').click(); })()")
    page.wait("window.descentlabLab.answer && window.descentlabLab.answer.landscape === '(x - 1)^2 + 4*(y + 2)^2' "
              "&& !window.descentlabLab.inflight")
    ends = page.js("window.descentlabLab.answer.runs.map(r => [r.name, r.f[0], r.f.at(-1), r.diverged])")
    assert all(last < first and not diverged for _, first, last, diverged in ends)  # every one descends f
    assert all(last < 1e-6 for name, _, last, _ in ends if name in ("sgd", "momentum", "nesterov"))
    assert page.js("document.getElementById('formula-text').textContent").startswith("f = (x - 1)^2")
    assert page.errors == []


def test_the_page_opens_on_the_lesson_its_caption_states(page):
    """Opened plainly, the page shows the ravine's caption ("plain GD zig-zags across the valley; momentum smooths
    it") as a picture that says so: the book's momentum lesson, whose numbers the assertion reads off the page."""
    page.call("Page.navigate", url=page.url)
    page.wait("window.descentlabLab?.answer && window.descentlabLab.answer.runs.length === 2 && "
              "!window.descentlabLab.inflight")
    assert page.js("document.getElementById('lesson').value") == "momentum"
    assert page.js("document.getElementById('formula-text').textContent").endswith(
        "plain GD zig-zags across the valley; momentum smooths it")
    assert not page.js("document.getElementById('lead').hidden")
    runs = page.js("window.descentlabLab.answer.runs.map(r => [r.name, r.path.slice(5, 60).map(p => p[1])])")
    flips = {name: float(np.mean(np.diff(np.sign(ys)) != 0)) for name, ys in runs}
    assert flips["sgd"] > 0.9 and flips["momentum"] < 0.2, flips  # GD's y flips sign at nearly every step
    assert page.js("document.querySelectorAll('.run-path').length") == 2
    # an unknown lesson in the address is named, with the allowed ones, and the default optimizers race
    page.call("Page.navigate", url=page.url + "?lesson=momentun")
    page.wait("document.getElementById('lead')?.textContent.includes('unknown lesson')")
    assert "allowed: none, bias-correction, momentum" in page.js("document.getElementById('lead').textContent")
    page.wait("window.descentlabLab?.answer && window.descentlabLab.answer.runs.length === 7")
    assert page.errors == []
