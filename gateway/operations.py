"""The operational side every Ghostgate process serves the same way, region and
router alike: FastAPI for `/healthz`, `/readyz`, `/metrics`, FastAPI's own 404
and 405 in the path's error dialect, and the lifespan that opens and closes
every async resource. The hot paths never go through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import Dialect, MethodNotAllowed, NotFound, render_error
from gateway.metrics import RequestMetrics

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def operations_app(
    title: str,
    *,
    running: Callable[[], AbstractAsyncContextManager[Any]],
    readiness: Callable[[], tuple[bool, dict[str, object]]],
    metrics: RequestMetrics,
    alive: dict[str, object],
    dialect: Callable[[str], Dialect],
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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = (
            NotFound(f"no route {request.url.path}")
            if exc.status_code == 404
            else MethodNotAllowed(str(exc.detail))
        )
        status, headers, body = render_error(error, dialect(request.url.path))
        return Response(
            body,
            status_code=status,
            headers={k.decode(): v.decode() for k, v in headers if k != b"content-length"},
        )

    return app
