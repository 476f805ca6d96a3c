"""Serving an ASGI app with Hypercorn, configured for editors' long-lived
connections, with the patches that Hypercorn, h2 and hpack need (`patches/`).

    serve    Hypercorn's configuration, serving until SIGTERM/SIGINT, the event loop
    patches  one module per patch of a library's internals, version-checked
"""

from __future__ import annotations

from gateway.server.serve import (
    Served,
    bind_address,
    hypercorn_config,
    run,
    serve_process,
    serve_until_signalled,
)

__all__ = [
    "Served",
    "bind_address",
    "hypercorn_config",
    "run",
    "serve_process",
    "serve_until_signalled",
]
