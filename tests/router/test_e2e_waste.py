"""Superseding and cancel storms work the same through the router as at a region."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.http2 import H2Connection, H2Stream
from gateway.store import open_store
from tests.e2e import get_json, http11_post
from tests.router.harness import Cluster, cluster, generate_body

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture(scope="module")
def gg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("waste"), names=("eu-west",)) as c:
        yield c


async def api_key(gg: Cluster, user: str) -> str:
    async with open_store(gg.state_dir) as store:
        return (await store.create_key(user))[1]


def region_ready(gg: Cluster) -> dict[str, Any]:
    ready: dict[str, Any] = get_json(gg.regions["eu-west"].url + "/readyz", gg.admin_auth())
    return ready


async def test_superseding_through_the_router(gg: Cluster) -> None:
    key = await api_key(gg, "grace")
    headers = [
        ("authorization", f"Bearer {key}"),
        ("user-agent", "vscode/1.95"),
        ("x-client-location", "eu"),
    ]
    sim = gg.regions["eu-west"].sim
    before = await asyncio.to_thread(sim.stats)
    async with await H2Connection.open("127.0.0.1", gg.port) as conn:
        older = await conn.request("POST", "/api/generate", headers, generate_body(500))
        assert await older.read_chunk()
        newer = await conn.request("POST", "/api/generate", headers, generate_body(4))
        older_lines = (await asyncio.wait_for(older.read_all(), 5)).splitlines()
        newer_lines = (await newer.read_all()).splitlines()
    assert json.loads(older_lines[-1])["done_reason"] == "superseded"
    assert json.loads(newer_lines[-1])["eval_count"] == 4
    after = await asyncio.to_thread(sim.stats)
    assert after["aborted"] == before["aborted"] + 1

    def summed() -> dict[str, Any]:
        savings: dict[str, Any] = get_json(gg.url + "/v1/status")["savings"]
        return savings

    # The router's status page sums what the regions spared (probed each second).
    for _ in range(60):
        savings = await asyncio.to_thread(summed)
        if savings["cancelled"].get("superseded", 0) >= 1:
            break
        await asyncio.sleep(0.05)
    assert savings["cancelled"]["superseded"] >= 1 and savings["saved_tokens"] > 400


async def test_cancel_storm_through_the_router_leaves_nothing_in_flight(gg: Cluster) -> None:
    key = await api_key(gg, "heidi")
    rng = random.Random(11)
    sim = gg.regions["eu-west"].sim

    async def h2_editor(conn: H2Connection, n: int) -> None:
        for _ in range(n):
            headers = [
                ("authorization", f"Bearer {key}"),
                ("x-client-location", "eu"),
                ("x-ghostgate-group", f"g{rng.randrange(4)}"),
            ]
            try:
                stream: H2Stream = await asyncio.wait_for(
                    conn.request(
                        "POST", "/api/generate", headers, generate_body(rng.randrange(1, 60))
                    ),
                    5,
                )
            except TimeoutError:
                continue
            for _ in range(rng.randrange(0, 4)):
                if not await stream.read_chunk():
                    break
            if rng.random() < 0.7:
                await stream.reset()
            else:
                await stream.read_all()

    def http11_editor(n: int) -> None:
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", gg.port), timeout=5) as sock:
                sock.sendall(
                    http11_post(
                        "/api/generate",
                        key,
                        generate_body(rng.randrange(5, 60)),
                        {"X-Client-Location": "eu"},
                    )
                )
                if rng.random() < 0.5:
                    sock.recv(rng.randrange(1, 400))

    async with await H2Connection.open("127.0.0.1", gg.port) as conn:
        await asyncio.gather(
            *(h2_editor(conn, 30) for _ in range(3)), asyncio.to_thread(http11_editor, 20)
        )

    def quiet() -> bool:
        ready, stats = region_ready(gg), sim.stats()
        return (
            ready["inflight"] == 0
            and ready["queued"] == 0
            and ready["groups_live"] == 0
            and stats["active"] == 0
            and stats["queued"] == 0
        )

    for _ in range(200):
        if await asyncio.to_thread(quiet):
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError(f"still busy: {region_ready(gg)}")
    stats = await asyncio.to_thread(sim.stats)
    assert stats["requests"] > 40 and stats["aborted"] > 5
