"""The live lab: ``descentlab lab`` serves a page where every control recomputes a race of descentlab's own
optimizers on a 2-D landscape (or a typed f(x, y)), through a small JSON API (:mod:`descentlab.lab.live.api`).

``serve()`` runs it; ``make_server()`` gives a server to run in a thread (tests, notebooks).
"""

from descentlab.lab.live.server import make_server, serve

__all__ = ["make_server", "serve"]
