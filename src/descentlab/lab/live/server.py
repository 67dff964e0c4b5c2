"""The live lab's web server: the standard library's ``ThreadingHTTPServer``.

Why the standard library: the lab serves one learner on their own machine — a page, three static files and a
JSON API of four routes — so a framework (Flask, FastAPI + uvicorn, …) would add dependencies to ``pip install
descentlab`` and nothing a learner would see; ``http.server`` is always there, works offline and keeps the core
light. The server listens on 127.0.0.1 unless told otherwise, answers only requests whose ``Host`` is the
address it serves (a web page elsewhere cannot reach it through DNS rebinding), caps request bodies, sends a
Content-Security-Policy that forbids anything not served by itself (no CDN, no inline script), and never
evaluates text it receives (f(x, y) goes through :mod:`descentlab.lab.live.expression`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from descentlab.lab.live import api
from descentlab.lab.live.presets import LANGUAGES, lesson_presets

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def static_file(name: str) -> bytes:
    """A page asset shipped as package data (src/descentlab/lab/live/static/)."""
    return resources.files("descentlab.lab.live").joinpath("static", name).read_bytes()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server_version = "descentlab-lab"
    protocol_version = "HTTP/1.1"
    quiet = True

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without TCP_NODELAY a small answer waits for the client's delayed ACK
        # (≈ 40 ms on Linux), longer than the whole recomputation it carries
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if not self.quiet:
            super().log_message(format, *args)

    # -- answers ------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, kind: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())

    def handle_one_request(self) -> None:
        """http.server's, with a bug answered as HTTP 500 and one JSON line (the traceback on stderr)."""
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - a bug in the lab: say so, keep serving
            import traceback

            traceback.print_exc()
            try:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"a bug in descentlab's lab: {type(err).__name__}: "
                            f"{err}"[:300], "")
            except OSError:
                pass
            self.close_connection = True

    def _error(self, status: int, message: str, field: str = "", **extra: Any) -> None:
        self._json(status, {"error": message, "field": field, **extra})

    def _host_ok(self) -> bool:
        """Requests must name the address served (``Host: 127.0.0.1:PORT`` or ``localhost:PORT``)."""
        host = (self.headers.get("Host") or "").strip().lower()
        address: Any = self.server.server_address
        name, port = str(address[0]), address[1]
        allowed = {f"{name}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        if not is_loopback(str(name)):
            return True  # --host chose another interface: the user asked for it
        return host in allowed

    # -- routes -------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "the Host header does not name this server", "Host")
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, static_file("index.html"), STATIC["index.html"])
        match = re.fullmatch(r"/static/([a-z]+\.[a-z]+)", path)
        if match and match.group(1) in STATIC:
            return self._send(HTTPStatus.OK, static_file(match.group(1)), STATIC[match.group(1)])
        if path == "/api/meta":
            return self._json(HTTPStatus.OK, api.meta())
        if path == "/api/lessons":
            lang = parse_qs(url.query).get("lang", ["en"])[0]
            if lang not in LANGUAGES:
                return self._error(HTTPStatus.BAD_REQUEST, f"unknown language {lang!r}; allowed: "
                                   f"{', '.join(LANGUAGES)}", "lang", allowed=list(LANGUAGES))
            return self._json(HTTPStatus.OK, {"lang": lang, "lessons": lesson_presets(lang)})
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        return self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}", "path",
                           allowed=["/", "/api/meta", "/api/lessons?lang=en|ko", "POST /api/race",
                                    "POST /api/landscape"])

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "the Host header does not name this server", "Host")
        path = urlsplit(self.path).path
        workers = getattr(self.server, "workers", None)
        routes: dict[str, Callable[[Any], Any]] = {"/api/race": lambda body: api.race_bytes(body, workers=workers),
                                                   "/api/landscape": api.landscape}
        if path not in routes:
            return self._error(HTTPStatus.NOT_FOUND, f"no such API: POST {path}", "path",
                               allowed=list(routes))
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required", "Content-Length")
        if not 0 <= length <= api.MAX_BODY:
            self.close_connection = True
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the request body is {length} bytes; at most {api.MAX_BODY} are accepted", "body")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            return self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {err}"[:300], "body")
        try:
            answer = routes[path](body)
        except api.ApiError as err:
            return self._json(err.status, err.payload)
        if isinstance(answer, bytes):
            return self._send(HTTPStatus.OK, answer)
        return self._json(HTTPStatus.OK, answer)


class LabServer(ThreadingHTTPServer):
    daemon_threads = True
    #: the worker processes that share a cold race's runs (:mod:`descentlab.lab.live.workers`), or ``None``
    workers: Any = None

    def server_close(self) -> None:
        super().server_close()
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    @property
    def url(self) -> str:
        address: Any = self.server_address
        host, port = str(address[0]), address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def make_server(host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, workers: int = 0) -> LabServer:
    """A server bound to ``host:port`` (port 0: a free one), not yet serving; warmed up (the first optimizer
    built in a process imports torch's compiler machinery, seconds on a busy machine) so the first request is
    as fast as the others. ``workers`` > 0 starts that many worker processes which share each request's new
    runs with the server's own (:mod:`descentlab.lab.live.workers`; ``server_close()`` stops them)."""
    from descentlab.lab.live.workers import RunWorkers

    pool = RunWorkers(workers)  # checks the count before anything listens; the workers warm up meanwhile
    handler = type("LabHandler", (Handler,), {"quiet": quiet})
    kind = type("LabServer6", (LabServer,), {"address_family": socket.AF_INET6}) if ":" in host else LabServer
    try:
        server = kind((host, port), handler)
    except OSError as err:  # an address not of this machine, a port in use or reserved
        pool.close()
        raise ValueError(f"cannot listen on {host} port {port} (--host / --port): {err.strerror or err}") from None
    api.meta()  # builds the catalog (each row probed once) before the first page asks for it
    api.race_bytes({"landscape": "bowl", "steps": 2, "optimizers": ["sgd"]}, cache=None)
    if workers:
        pool.wait_ready()
        server.workers = pool
    return server


def serve(host: str = "127.0.0.1", port: int = 0, *, open_browser: bool = True, quiet: bool = True,
          workers: int = 0) -> None:
    """Serve the live lab until interrupted; print its URL, open it in the browser unless told not to."""
    server = make_server(host, port, quiet=quiet, workers=workers)
    print(f"descentlab lab: serving {server.url}  (Ctrl-C stops)", flush=True)
    if not is_loopback(host):
        print(f"descentlab lab: warning: listening on {host}, not only this machine: anyone who can reach it can "
              "use the lab", file=sys.stderr, flush=True)
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("descentlab lab: stopped", flush=True)
    finally:
        server.server_close()
