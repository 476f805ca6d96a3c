"""Active health probes of backends, and passive ejection on failure.

Every `interval` the prober asks each backend for `/api/tags` (what it serves)
and `/api/ps` (what it has loaded). A backend that answers is healthy; one that
does not is taken out until it answers again. The proxy ejects a backend at
once when a connection to it fails (`eject`), so no request waits a probe
interval to learn that a box is gone.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.errors import GatewayError
from gateway.lifecycle import every
from gateway.pool.backends import Backend, normalize_model
from gateway.pool.scheduler import Scheduler
from gateway.pool.upstream import Upstream
from gateway.settings import HealthSettings

log = logging.getLogger("ghostgate.health")


def model_names(payload: object) -> frozenset[str]:
    """Model names from an `/api/tags` or `/api/ps` answer; tolerant of junk."""
    if not isinstance(payload, dict):
        return frozenset()
    entries = payload.get("models")
    if not isinstance(entries, list):
        return frozenset()
    names = set()
    for entry in entries:
        if isinstance(entry, dict):
            name = entry.get("name") or entry.get("model")
            if isinstance(name, str) and name:
                names.add(normalize_model(name))
    return frozenset(names)


def _entries(payload: object) -> list[object]:
    models = payload.get("models") if isinstance(payload, dict) else None
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


class HealthProber:
    """Keeps each backend's `healthy`, `models` and `loaded` current."""

    def __init__(self, scheduler: Scheduler, upstream: Upstream, settings: HealthSettings) -> None:
        self._scheduler = scheduler
        self._upstream = upstream
        self._settings = settings

    async def run(self) -> None:
        """Probe every `interval` forever; cancelled by the lifespan that owns it."""
        await every(self._settings.interval, self.probe_all)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(b) for b in self._scheduler.backends))
        # Capacity may have come back: hand it to whoever is waiting.
        self._scheduler.dispatch()

    async def probe(self, backend: Backend) -> None:
        timeout = self._settings.timeout
        try:
            tags = await self._upstream.get_json(backend, "/api/tags", timeout)
            ps = await self._upstream.get_json(backend, "/api/ps", timeout)
        except GatewayError as exc:
            self._mark_down(backend, exc.message)
            return
        if not backend.healthy:
            log.info("backend up", extra={"backend": backend.url})
        backend.models = model_names(tags)
        backend.loaded = model_names(ps)
        # Kept whole so /api/tags and /api/ps answer from memory, as Ollama would.
        backend.details["tags"] = _entries(tags)
        backend.details["ps"] = _entries(ps)
        backend.healthy = True
        backend.consecutive_failures = 0
        backend.last_error = ""

    def eject(self, backend: Backend, reason: str) -> None:
        """Passive ejection: the proxy saw this backend fail a request."""
        backend.consecutive_failures += 1
        self._mark_down(backend, reason)

    def _mark_down(self, backend: Backend, reason: str) -> None:
        if backend.healthy:
            log.warning("backend down", extra={"backend": backend.url, "reason": reason})
        backend.healthy = False
        backend.last_error = reason
