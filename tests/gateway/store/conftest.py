"""Fixtures for the store: a real `redis-server` per test, and opened stores on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.store.embedded import EmbeddedStore
from gateway.store.resilient import ResilientStore
from tests.gateway.store.redis_server import RedisServer, resilient


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["embedded", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[EmbeddedStore | ResilientStore]:
    """Each backend in turn, opened; the tests below hold for both."""
    if request.param == "embedded":
        async with EmbeddedStore(tmp_path / "ghostgate.db") as embedded:
            yield embedded
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with resilient(server.url, tmp_path / "ghostgate.db") as shared:
        yield shared
