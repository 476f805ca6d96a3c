"""Ollama's routes besides generation (gateway/dialects/ollama/generation.py):
`/api/show`, `/api/tags`, `/api/ps`, `/api/version` and `/`.

`/api/tags` and `/api/ps` answer from what the health
prober last saw, so listing models costs no backend round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.asgi import (
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_json,
)
from gateway.dialects.ollama.request import parse_model_field
from gateway.errors import ModelNotFound, NoCapacity
from gateway.pool import Backend, normalize_model
from gateway.services import Services
from gateway.trace import trace_of


class ShowEndpoint:
    """POST /api/show: asked of a backend that serves the model (no slot needed)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(scope, receive, self._services.settings.limits.max_body_bytes)
        model = parse_model_field(raw)
        trace_of(scope).model = model
        backend = any_backend_with(self._services.scheduler.backends, model)
        response = await self._services.upstream.post(backend, "/api/show", raw)
        try:
            await send_bytes(send, response.status, await response.read(), response.content_type)
        finally:
            response.close()


def any_backend_with(backends: list[Backend], model: str) -> Backend:
    """The least busy healthy backend that lists `model`."""
    candidates = [b for b in backends if b.healthy and b.serves(model)]
    if candidates:
        return min(candidates, key=lambda b: b.inflight)
    if any(b.serves(model) for b in backends) or not any(b.healthy for b in backends):
        raise NoCapacity(f'no healthy backend serves "{model}"', retry_after=2)
    raise ModelNotFound(f'model "{model}" not found, try pulling it first')


def merged_entries(backends: list[Backend], key: str) -> list[Any]:
    """Model entries of every healthy backend, each model once."""
    seen: dict[str, Any] = {}
    for backend in backends:
        if not backend.healthy:
            continue
        for entry in backend.details.get(key, []):  # type: ignore[attr-defined]
            name = entry.get("name") or entry.get("model") or ""
            seen.setdefault(normalize_model(name), entry)
    return [seen[name] for name in sorted(seen)]


def listing(services: Services, key: str) -> Callable[[Scope, Receive, Send], Any]:
    """GET /api/tags (key "tags") or /api/ps (key "ps")."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"models": merged_entries(services.scheduler.backends, key)})

    return endpoint


def version(services: Services) -> Callable[[Scope, Receive, Send], Any]:
    """GET /api/version: the version of the Ollama behind this region."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        healthy = [b for b in services.scheduler.backends if b.healthy]
        if not healthy:
            raise NoCapacity("no healthy backend", retry_after=2)
        payload = await services.upstream.get_json(healthy[0], "/api/version", 5.0)
        await send_json(send, 200, payload)

    return endpoint


async def root(scope: Scope, receive: Receive, send: Send) -> None:
    """GET / and HEAD /: what plugins probe to see whether "Ollama" is up."""
    await send_bytes(send, 200, b"Ollama is running", b"text/plain; charset=utf-8")
