"""The operational side every Ghostgate process serves the same way, region and
router alike: FastAPI for `/healthz`, `/readyz` and `/metrics`, and the lifespan
that opens and closes every async resource. The hot paths never go through it;
the route table sends only these three paths (and the lifespan) here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from gateway.errors import Dialect
from gateway.metrics import RequestMetrics
from gateway.routing import Route

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def operations_app(
    title: str,
    *,
    running: Callable[[], AbstractAsyncContextManager[Any]],
    readiness: Callable[[], tuple[bool, dict[str, object]]],
    metrics: RequestMetrics,
    alive: dict[str, object],
) -> FastAPI:
    """FastAPI for health, readiness and metrics; owns the lifespan (`running`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running():
            yield

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return alive

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, report = readiness()
        return JSONResponse(report, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def exposition() -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)

    return app


def operations_routes(app: FastAPI, dialect: Dialect) -> list[Route[Any]]:
    """The route table's entries for what `app` serves: open, never generating."""
    return [
        Route(path, ("GET",), dialect=dialect, auth=False).bind(app)
        for path in ("/healthz", "/readyz", "/metrics")
    ]
