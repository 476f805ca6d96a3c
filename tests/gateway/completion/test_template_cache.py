"""The template cache holds served models only: a name no backend serves (the
Ollama dialect asks with the client's own) is never fetched or kept."""

from __future__ import annotations

import json

import pytest

from gateway.completion import TemplateCache
from gateway.pool import Backend

pytestmark = pytest.mark.anyio

SERVED = "starcoder2:3b"
TEMPLATE = "<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"


class FakeResponse:
    status = 200

    async def read(self) -> bytes:
        return json.dumps({"template": TEMPLATE}).encode()

    def close(self) -> None:
        pass


class FakeUpstream:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def post(self, backend: Backend, path: str, body: bytes) -> FakeResponse:
        self.asked.append(json.loads(body)["model"])
        return FakeResponse()


def backends(*models: str) -> list[Backend]:
    return [Backend("http://b1", 4, healthy=True, models=frozenset(models))]


async def test_an_unserved_model_is_never_fetched_or_kept() -> None:
    upstream = FakeUpstream()
    cache = TemplateCache(upstream)  # type: ignore[arg-type]
    pool = backends(SERVED)
    for n in range(1000):  # a flood of made-up names
        assert await cache.template(f"made-up-{n}:latest", pool) is None
    assert upstream.asked == [] and not cache._entries and not cache._locks
    assert await cache.template(SERVED, pool) == TEMPLATE
    assert await cache.template(SERVED, pool) == TEMPLATE
    assert upstream.asked == [SERVED] and len(cache) == 1


async def test_a_model_no_longer_served_is_forgotten() -> None:
    upstream = FakeUpstream()
    cache = TemplateCache(upstream)  # type: ignore[arg-type]
    await cache.template(SERVED, backends(SERVED))
    moved = backends("qwen2.5-coder:7b")
    assert await cache.template(SERVED, moved) is None  # not answered from the cache either
    await cache.template("qwen2.5-coder:7b", moved)
    assert len(cache) == 1 and SERVED not in cache._locks
