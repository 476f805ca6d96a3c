"""Which model serves a request, and what the gateway knows about each model.

A region's model table maps names clients send (aliases such as Copilot's
engine names) to models its backends serve, and names a default model per task
(completion, chat) for clients that cannot choose. Templates (from Ollama's
`/api/show`) are fetched once per model and cached: they decide whether Ollama
can build a fill-in-the-middle prompt itself (`.Suffix`) or the gateway must.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from gateway.completion.fim import (
    FimFamily,
    custom_family,
    detect_family,
    family_by_name,
    model_key,
)
from gateway.errors import GatewayError, ModelNotFound
from gateway.pool import Backend, Upstream, normalize_model
from gateway.settings import ModelSettings

TEMPLATE_TTL = 300.0


def fim_overrides(settings: ModelSettings) -> dict[str, FimFamily]:
    """Configured FIM formats by model key, as `detect_family` takes them."""
    overrides: dict[str, FimFamily] = {}
    for model, override in settings.fim.items():
        if override.template is not None:
            family = custom_family(override.template, override.stop, name=model)
        else:
            family = family_by_name(override.family or "")
        overrides[model_key(model)] = family
    return overrides


def resolve_model(
    requested: str, task: str, table: ModelSettings, served: Sequence[str], strict: bool = True
) -> str:
    """The served model for `requested`; `ModelNotFound` when there is none.

    With `strict` False (Copilot, whose engine names are not ours), an unknown
    name falls back to the task's default model.
    """
    name = table.aliases.get(requested) or table.aliases.get(requested.removesuffix(":latest"))
    candidate = normalize_model(name or requested) if (name or requested) else ""
    if candidate in served:
        return candidate
    if not strict or not requested:
        default = default_model(task, table, served)
        if default:
            return default
    raise ModelNotFound(f'model "{requested}" not found, try pulling it first')


def default_model(task: str, table: ModelSettings, served: Sequence[str]) -> str | None:
    """The configured default for `task`, else the first served model fit for it."""
    configured = table.completion if task == "completion" else table.chat
    if configured:
        return normalize_model(configured)
    ordered = sorted(served)
    if task == "completion":
        fim = [m for m in ordered if detect_family(m) is not None]
        ordered = fim or ordered
    return ordered[0] if ordered else None


class TemplateCache:
    """Ollama templates by model, fetched from a backend once per TTL."""

    def __init__(self, upstream: Upstream, ttl: float = TEMPLATE_TTL) -> None:
        self._upstream = upstream
        self._ttl = ttl
        self._entries: dict[str, tuple[float, str | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def template(self, model: str, backends: Sequence[Backend]) -> str | None:
        """The model's template, or None if no backend could say (then FIM is built here).

        A model no backend serves is never fetched or kept: the Ollama dialect asks
        with the client's own model name, and a flood of made-up names must not
        grow the cache or its locks. It holds served models only, at most."""
        if not any(backend.serves(model) for backend in backends):
            return None
        cached = self._entries.get(model)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        lock = self._locks.setdefault(model, asyncio.Lock())
        async with lock:  # one /api/show per model, however many requests ask at once
            cached = self._entries.get(model)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            template = await self._fetch(model, backends)
            self._entries[model] = (time.monotonic() + self._ttl, template)
            self._forget_unserved(backends)
            return template

    def __len__(self) -> int:
        return len(self._entries)

    def _forget_unserved(self, backends: Sequence[Backend]) -> None:
        # Models that left every backend; O(models), once per fetch (a TTL per model).
        served = {model for backend in backends for model in backend.models}
        for model in [m for m in self._entries if m not in served]:
            del self._entries[model]
        for model in [
            m for m, lock in self._locks.items() if m not in served and not lock.locked()
        ]:
            del self._locks[model]

    async def _fetch(self, model: str, backends: Sequence[Backend]) -> str | None:
        for backend in backends:
            if not (backend.healthy and backend.serves(model)):
                continue
            body = json.dumps({"model": model}).encode()
            try:
                response = await self._upstream.post(backend, "/api/show", body)
            except GatewayError:
                continue
            try:
                if response.status != 200:
                    continue
                payload = json.loads(await response.read())
            except (GatewayError, ValueError):
                continue
            finally:
                response.close()
            template = payload.get("template") if isinstance(payload, dict) else None
            return template if isinstance(template, str) else None
        return None
