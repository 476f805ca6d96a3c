"""Serving the region app with Hypercorn: HTTP/1.1, h2c (prior knowledge and
upgrade) and, with a certificate, TLS with h2 by ALPN.

Hypercorn's defaults suit browsers, not editors that hold one connection for a
working day: `keep_alive_timeout` (5 s) closes idle HTTP/2 connections and
`keep_alive_max_requests` (1000) sends GOAWAY and stalls the streams in flight.
Both are raised here from `ServerSettings`. With an `operations_port`, the same
server also listens there (gateway/operations.py `listening`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway.asgi import ASGIApp
from gateway.metrics import RequestMetrics
from gateway.operations import listening
from gateway.server import patches
from gateway.server.h2_budget import Allowance, H2Limits
from gateway.server.patches import connections, h2_guard
from gateway.settings import GatewaySettings, ServerSettings

log = logging.getLogger("ghostgate.gateway")


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(server: ServerSettings) -> Config:
    config = Config()
    config.bind = [bind_address(server.host, server.port)]
    config.keep_alive_timeout = server.keep_alive_timeout
    config.keep_alive_max_requests = server.keep_alive_max_requests
    config.h2_max_concurrent_streams = server.h2_max_concurrent_streams
    config.graceful_timeout = server.graceful_timeout
    # The request head's bounds: h11 refuses a bigger head with 431 (and closes),
    # h2 advertises and enforces SETTINGS_MAX_HEADER_LIST_SIZE.
    config.h11_max_incomplete_size = server.max_header_bytes
    config.h2_max_header_list_size = server.max_header_bytes
    config.ssl_handshake_timeout = server.head_timeout
    config.accesslog = None  # ours is the JSON access log, without secrets
    config.errorlog = logging.getLogger("hypercorn.error")
    if server.certfile is not None:
        config.certfile = str(server.certfile)
        config.keyfile = str(server.keyfile) if server.keyfile else None
    if server.operations_port:
        # Plain HTTP even beside TLS: it is for the pod's probes and the scraper,
        # on loopback by default. Assigned, never appended: Hypercorn's default
        # list is shared by every Config.
        operations = bind_address(server.operations_host, server.operations_port)
        if config.ssl_enabled:
            config.insecure_bind = [operations]
        else:
            config.bind = [*config.bind, operations]
    return config


def h2_limits(server: ServerSettings) -> H2Limits:
    return H2Limits(
        early_reset=Allowance(server.h2_reset_burst, server.h2_reset_rate),
        control=Allowance(server.h2_control_burst, server.h2_control_rate),
        empty=Allowance(server.h2_empty_burst, server.h2_empty_rate),
        refused=Allowance(server.h2_refused_burst, server.h2_refused_rate),
    )


async def serve_until_signalled(
    app: ASGIApp,
    settings: GatewaySettings,
    on_drain: Callable[[], None],
    metrics: RequestMetrics | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain: readiness goes 503 at once,
    in-flight streams get `graceful_timeout` to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def begin_drain() -> None:
        if not stop.is_set():
            log.info("draining", extra={"region": settings.region})
            on_drain()
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, begin_drain)
    patches.apply()
    server = settings.server
    table = connections.configure(server.max_connections, server.head_timeout)
    h2_guard.configure(h2_limits(server))
    if metrics is not None:
        metrics.watch_connections(table)
    served = listening(app, server.operations_port)
    await serve(served, hypercorn_config(server), shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def run(main: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run `main` on uvloop when asked and available, else asyncio's loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main)
            return
    asyncio.run(main)


class Served(Protocol):
    """What `serve_process` needs of a process's services."""

    draining: bool

    @property
    def metrics(self) -> RequestMetrics: ...


def serve_process(app: ASGIApp, settings: GatewaySettings, services: Served) -> None:
    """Serve `app` from this process until SIGTERM or SIGINT, then drain: `services`
    turns `draining` (readiness answers 503) and streams get `graceful_timeout`.
    The main loop of a region and of the router."""

    def drain() -> None:
        services.draining = True

    run(serve_until_signalled(app, settings, drain, services.metrics), settings.server.use_uvloop)
