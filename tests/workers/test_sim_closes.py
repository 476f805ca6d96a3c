"""`/sim/closes`: when a client's connection closed mid-generation, stamped at once."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from workers.sim.app import run_sim
from workers.sim.config import FastMode, SimConfig

pytestmark = pytest.mark.anyio

# Tokens far apart: the stamp must come from the close, not from the next token.
SLOW = SimConfig(fast=FastMode(True, tokens=20, interval=0.2))


async def closes(session: aiohttp.ClientSession, url: str) -> list[dict[str, object]]:
    async with session.get(url + "/sim/closes") as response:
        found: list[dict[str, object]] = (await response.json())["closes"]
        return found


async def test_a_closed_stream_is_stamped_when_the_connection_drops() -> None:
    body = json.dumps({"model": "starcoder2:3b", "prompt": "cancel-me", "stream": True})
    async with run_sim(SLOW) as url, aiohttp.ClientSession() as session:
        stream_session = aiohttp.ClientSession()
        try:
            response = await stream_session.post(url + "/api/generate", data=body)
            await response.content.readline()  # streaming: the first token is here
            closed_at = time.monotonic()
            response.close()  # drops the connection, as a proxy cancelling does
        finally:
            await stream_session.close()
        await asyncio.sleep(0.05)  # well before the next token (0.2 s)
        found = await closes(session, url)
        assert [entry["prompt"] for entry in found] == ["cancel-me"]
        stamp = found[0]["closed_at"]
        assert isinstance(stamp, float) and 0 <= stamp - closed_at < 0.05
        async with session.post(url + "/sim/reset"):
            pass
        assert await closes(session, url) == []


async def test_a_finished_stream_leaves_no_stamp() -> None:
    body = json.dumps({"model": "starcoder2:3b", "prompt": "done", "options": {"num_predict": 1}})
    async with run_sim(SLOW) as url, aiohttp.ClientSession() as session:
        async with session.post(url + "/api/generate", data=body) as response:
            await response.read()
        assert await closes(session, url) == []
