"""``descentlab lab [--host 127.0.0.1] [--port N] [--no-browser]``: the live lab in the browser — move a control,
watch every optimizer's path, f and inner state recompute (docs/lab.md, "The live lab")."""

from __future__ import annotations

import argparse

from descentlab.cli._args import integer


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lab", help="the live lab: a local web page where every control recomputes the race")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=integer(0, 65535), default=8765,
                   help="port, 0..65535 (default 8765; 0 picks a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    p.add_argument("--workers", type=integer(0, 64), default=None,
                   help="worker processes that compute a race's runs beside the server's own, 0..64 (default: one "
                        "fewer than the cores, at most 3; 0: every run in the server's process)")
    p.add_argument("--log", action="store_true", help="log every request to stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descentlab.lab.live import serve
    from descentlab.lab.live.workers import default_count

    if not args.host.strip():
        raise ValueError("--host must name an address, got an empty string")
    import socket

    try:  # checked before any server starts
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise ValueError(f"--host {args.host!r} is not an address this machine can listen on "
                         f"({getattr(err, 'strerror', None) or err})") from None
    workers = default_count() if args.workers is None else args.workers
    serve(args.host, args.port, open_browser=not args.no_browser, quiet=not args.log, workers=workers)
    return 0
