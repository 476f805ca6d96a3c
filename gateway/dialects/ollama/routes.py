"""Ollama's routes besides generation (gateway/dialects/ollama/generation.py):
`/api/show`, `/api/tags`, `/api/ps`, `/api/version` and `/`.

`/api/tags` and `/api/ps` answer from what the health
prober last saw, so listing models costs no backend round trip.

`/api/show` and `/api/version` ask a backend, and editors ask them on every
start and file switch. A backend's 200 JSON answer is reused for
`waste.backend_answer_ttl` seconds (`BackendAnswers`), per backend and, for
`/api/show`, per model. The model is checked against the served ones first: an
unknown model is a 404 that costs neither a backend call nor a cache entry.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from gateway.asgi import (
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_json,
)
from gateway.dialects.ollama.request import parse_json_object, parse_model_field
from gateway.errors import ModelNotFound, NoCapacity
from gateway.pool import Backend, normalize_model
from gateway.services import Services
from gateway.trace import trace_of

# A verbose /api/show holds a model's whole vocabulary (megabytes): bound the
# bytes. Keys are only ever (healthy backend, model it serves), so few.
ANSWER_CACHE_BYTES = 32 * 1024 * 1024
ENTRY_OVERHEAD = 128  # bookkeeping per entry
JSON = b"application/json; charset=utf-8"  # what Ollama sends with its JSON


class BackendAnswers:
    """Backends' 200 JSON answers to one route, each reused for `ttl` seconds.

    Keyed by backend and what shapes the answer. Only asked about backends that
    are healthy and serve the model now, so an answer never outlives either.
    The least recently used entries go first past `max_bytes`; `ttl` 0: off.
    """

    def __init__(
        self,
        ttl: float,
        on_hit: Callable[[], None],
        *,
        max_bytes: int = ANSWER_CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.size = 0
        self._on_hit = on_hit
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def find(self, backends: Iterable[Backend], variant: str) -> bytes | None:
        """A live answer of any of `backends`, or None."""
        now = self._clock()
        for backend in backends:
            key = f"{backend.url}\n{variant}"
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry[1] <= now:
                self._drop(key)
                continue
            self._entries.move_to_end(key)
            self._on_hit()
            return entry[0]
        return None

    def keep(self, backend: Backend, variant: str, body: bytes) -> None:
        """Remember a 200 answer if it is JSON; an error or anything else is not kept."""
        if self.ttl <= 0 or len(body) + ENTRY_OVERHEAD > self.max_bytes:
            return
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return
        key = f"{backend.url}\n{variant}"
        self._drop(key)
        self._entries[key] = (body, self._clock() + self.ttl)
        self.size += len(body) + ENTRY_OVERHEAD
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry[0]) + ENTRY_OVERHEAD


def show_variant(raw: bytes, model: str) -> str | None:
    """What shapes an /api/show answer: the model and `verbose`. None when the body
    asks more (`system`, `options`...): such an answer is never reused."""
    body = parse_json_object(raw)
    verbose = body.get("verbose", False)
    if not set(body) <= {"model", "name", "verbose"} or not isinstance(verbose, bool):
        return None
    return f"{model}\n{'verbose' if verbose else 'brief'}"


class ShowEndpoint:
    """POST /api/show: asked of a backend that serves the model (no slot needed),
    or answered from what that backend said within `backend_answer_ttl`."""

    def __init__(self, services: Services, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._services = services
        hits = services.metrics.backend_answer_hits.labels("/api/show")
        self._answers = BackendAnswers(
            services.settings.waste.backend_answer_ttl, hits.inc, clock=clock
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self._services.settings.limits
        raw = await read_body(scope, receive, limits.max_body_bytes, limits.body_timeout)
        model = parse_model_field(raw, limits)
        trace_of(scope).model = model
        # Before the cache: an unknown model is a 404, with nothing looked up.
        candidates = backends_with(self._services.scheduler.backends, model)
        variant = show_variant(raw, model)
        if variant is not None:
            cached = self._answers.find(candidates, variant)
            if cached is not None:
                await send_bytes(send, 200, cached, JSON)
                return
        backend = candidates[0]
        response = await self._services.upstream.post(backend, "/api/show", raw)
        try:
            body = await response.read()
        finally:
            response.close()
        if variant is not None and response.status == 200:
            self._answers.keep(backend, variant, body)
        await send_bytes(send, response.status, body, response.content_type)


def backends_with(backends: list[Backend], model: str) -> list[Backend]:
    """The healthy backends that list `model`, least busy first; never empty."""
    candidates = sorted(
        (b for b in backends if b.healthy and b.serves(model)), key=lambda b: b.inflight
    )
    if candidates:
        return candidates
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


def version(
    services: Services, *, clock: Callable[[], float] = time.monotonic
) -> Callable[[Scope, Receive, Send], Any]:
    """GET /api/version: the version of the Ollama behind this region, asked of a
    healthy backend at most once per `backend_answer_ttl`."""
    hits = services.metrics.backend_answer_hits.labels("/api/version")
    answers = BackendAnswers(services.settings.waste.backend_answer_ttl, hits.inc, clock=clock)

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        healthy = [b for b in services.scheduler.backends if b.healthy]
        if not healthy:
            raise NoCapacity("no healthy backend", retry_after=2)
        body = answers.find(healthy, "version")
        if body is None:
            # A non-200 or non-JSON answer raises UpstreamError: never kept.
            payload = await services.upstream.get_json(healthy[0], "/api/version", 5.0)
            body = json.dumps(payload).encode()
            answers.keep(healthy[0], "version", body)
        await send_bytes(send, 200, body, b"application/json")

    return endpoint


async def root(scope: Scope, receive: Receive, send: Send) -> None:
    """GET / and HEAD /: what plugins probe to see whether "Ollama" is up."""
    await send_bytes(send, 200, b"Ollama is running", b"text/plain; charset=utf-8")
