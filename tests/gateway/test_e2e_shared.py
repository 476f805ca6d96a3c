"""Regions sharing one Redis: per-user limits hold across them, a request at one
supersedes its group's older request at the other, and Redis going away fails
no request."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from gateway.http2 import H2Connection
from tests.e2e import Region, region
from tests.gateway.store.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MODEL = "starcoder2:3b"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def regions(tmp_path: Path, redis: RedisServer) -> Iterator[tuple[Region, Region]]:
    args = ["--redis", redis.url, "--rate-limit", "10"]
    with ExitStack() as stack:
        pair = tuple(
            stack.enter_context(
                region(tmp_path, name=name, region_args=args, sim_args=["--load-seconds", "0"])
            )
            for name in ("region-a", "region-b")
        )
        yield pair  # type: ignore[misc]


def generate(reg: Region, user: str = "carol") -> tuple[int, str | None]:
    body = json.dumps(
        {"model": MODEL, "prompt": "x", "stream": False, "options": {"num_predict": 2}}
    ).encode()
    request = urllib.request.Request(
        reg.url + "/api/generate", data=body, headers=reg.auth(user), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Retry-After")


def test_rate_limit_holds_across_two_regions(regions: tuple[Region, Region]) -> None:
    a, b = regions
    results = [generate(reg) for _ in range(8) for reg in (a, b)]
    assert sum(1 for status, _ in results if status == 200) == 10
    refused = [retry for status, retry in results if status == 429]
    assert len(refused) == 6 and all(retry and int(retry) >= 1 for retry in refused)
    assert generate(a, user="dave")[0] == 200  # another user has a budget of their own


async def test_newer_request_at_one_region_supersedes_older_at_the_other(
    regions: tuple[Region, Region],
) -> None:
    a, b = regions
    body = json.dumps(
        {"model": MODEL, "prompt": "def f():", "options": {"num_predict": 400}}
    ).encode()

    def headers(reg: Region) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {reg.token('erin')}"), ("x-ghostgate-group", "tab")]

    async with (
        await H2Connection.open("127.0.0.1", a.port) as to_a,
        await H2Connection.open("127.0.0.1", b.port) as to_b,
    ):
        older = await to_a.request("POST", "/api/generate", headers(a), body)
        assert await older.read_chunk()
        newer = await to_b.request("POST", "/api/generate", headers(b), body.replace(b"400", b"3"))
        older_lines = (await asyncio.wait_for(older.read_all(), 5)).splitlines()
        await newer.read_all()
    assert json.loads(older_lines[-1])["done_reason"] == "superseded"


def test_redis_going_away_fails_no_request(
    regions: tuple[Region, Region], redis: RedisServer
) -> None:
    a, b = regions
    assert generate(a, "frank")[0] == 200
    redis.stop()
    statuses = [generate(reg, "frank")[0] for reg in (a, b) for _ in range(3)]
    assert statuses == [200] * 6
    a.wait_until(lambda r: r["store_degraded"] is True, what="the store to say degraded")
    redis.start()
    a.wait_until(lambda r: r["store_degraded"] is False, timeout=15, what="Redis back")
    assert generate(b, "frank")[0] == 200


def test_revoking_a_key_in_redis_reaches_every_region_within_5s(
    regions: tuple[Region, Region], redis: RedisServer
) -> None:
    import time

    from gateway.auth.tokens import mint
    from gateway.store import open_store
    from gateway.store.base import token_id_for

    a, b = regions

    async def create() -> tuple[str, str]:
        async with open_store(a.state_dir, redis.url) as store:
            record, _secret = await store.create_key("ivan")
            return record.key_id, record.user

    key_id, user = asyncio.run(create())
    token = mint(a.keys.active, user, token_id=token_id_for(key_id))[0]
    a.tokens[user] = b.tokens[user] = token
    assert [generate(reg, user)[0] for reg in (a, b)] == [200, 200]

    async def revoke() -> None:
        async with open_store(a.state_dir, redis.url) as store:
            assert await store.revoke_key(key_id)

    asyncio.run(revoke())
    revoked_at = time.monotonic()
    for reg in (a, b):
        while generate(reg, user)[0] != 401:
            assert time.monotonic() - revoked_at < 5.0, "revocation took more than 5 s"
            time.sleep(0.1)
