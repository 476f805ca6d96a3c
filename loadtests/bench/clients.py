"""The benchmark's own clients: time to first token and inter-token gaps per
request, cancel latency, and one long-lived HTTP/2 connection.

HTTP/2 paths use Ghostgate's client (`gateway.http2.client`, which really sends
RST_STREAM), streams spread over as few connections as the server's stream
limit allows; the backend directly is HTTP/1.1 (aiohttp, one connection per
concurrent request), as it is all Ollama speaks. Times are `time.monotonic()`
from sending the request; a token's arrival is the arrival of the read that
carried its NDJSON line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from gateway.http2 import H2Client, H2Error

MODEL = "starcoder2:3b"
STREAMS_PER_CONNECTION = 100  # below nginx's and Hypercorn's limits (128, 256)


def body(prompt: str = "def fib(n):", openai: bool = False) -> bytes:
    """A streamed completion request: Ollama's /api/generate, or OpenAI's
    /v1/completions (LiteLLM's path; the simulated worker's fast mode sends
    its fixed tokens whatever `max_tokens` says)."""
    if openai:
        request = {"model": MODEL, "prompt": prompt, "stream": True, "max_tokens": 64}
        return json.dumps(request).encode()
    return json.dumps({"model": MODEL, "prompt": prompt, "stream": True}).encode()


@dataclass(frozen=True, slots=True)
class Target:
    """Where one path is reached: host, port, protocol, and its auth header."""

    name: str
    host: str
    port: int
    http2: bool
    authorization: str = field(default="", repr=False)
    openai: bool = False  # OpenAI's /v1/completions with SSE instead of Ollama's NDJSON

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def path(self) -> str:
        return "/v1/completions" if self.openai else "/api/generate"

    def body(self, prompt: str = "def fib(n):") -> bytes:
        return body(prompt, self.openai)

    def headers(self, group: str) -> list[tuple[str, str]]:
        headers = [("content-type", "application/json"), ("x-ghostgate-group", group)]
        if self.authorization:
            headers.append(("authorization", self.authorization))
        return headers


@dataclass(slots=True)
class Sample:
    """One streamed request as the client saw it."""

    ttft: float = 0.0  # seconds from sending to the first body byte
    gaps: list[float] = field(default_factory=list)  # seconds between token lines
    ok: bool = True


def token_gaps(chunks: list[tuple[float, bytes]]) -> list[float]:
    """Gaps between consecutive token lines, the final stats line left out.

    NDJSON lines or SSE `data:` events (blank lines and `data: [DONE]` are
    not tokens; the last event, with the finish reason, is left out as
    Ollama's `done` line is). Each line takes the arrival time of the read
    that completed it; two lines in one read are 0 s apart, which is what the
    reader experienced."""
    arrivals: list[float] = []
    pending = b""
    for at, data in chunks:
        pending += data
        lines = pending.split(b"\n")
        pending = lines.pop()
        arrivals.extend(at for line in lines if line.strip() and line.strip() != b"data: [DONE]")
    tokens = arrivals[:-1]  # the last line is Ollama's `done` line with the stats
    return [b - a for a, b in itertools.pairwise(tokens)]


STAGGER = 0.4  # seconds: one stream's length here; workers start spread over it


async def drive(
    one: Callable[[int], Awaitable[Sample]], concurrency: int, total: int, stagger: float = 0.0
) -> list[Sample]:
    """`total` requests, `concurrency` at a time, each worker one after the other.

    With `stagger`, worker i starts i/concurrency of it late: editors do not
    ask in lockstep, and without it every stream would start in the same
    millisecond as its siblings, for as long as the run lasts."""
    remaining = total
    samples: list[Sample] = []

    async def worker(index: int) -> None:
        nonlocal remaining
        await asyncio.sleep(stagger * index / concurrency)
        while remaining > 0:
            remaining -= 1
            samples.append(await one(index))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return samples


async def stream_samples(target: Target, concurrency: int, total: int) -> list[Sample]:
    """TTFT and gaps of `total` streamed requests, `concurrency` in flight."""
    if target.http2:
        return await _h2_samples(target, concurrency, total)
    return await _h1_samples(target, concurrency, total)


async def _h2_samples(target: Target, concurrency: int, total: int) -> list[Sample]:
    count = max(1, -(-concurrency // STREAMS_PER_CONNECTION))
    clients = [H2Client(target.host, target.port) for _ in range(count)]
    payload = target.body()
    try:

        async def one(worker: int) -> Sample:
            client = clients[worker % count]
            started = time.monotonic()
            try:
                stream = await client.request(
                    "POST", target.path, target.headers(f"w{worker}"), payload
                )
                chunks = [(time.monotonic(), chunk) async for chunk in stream]
            except H2Error:
                return Sample(ok=False)
            if stream.status != 200 or not chunks:
                return Sample(ok=False)
            return Sample(chunks[0][0] - started, token_gaps(chunks))

        return await drive(one, concurrency, total, STAGGER)
    finally:
        for client in clients:
            await client.close()


async def _h1_samples(target: Target, concurrency: int, total: int) -> list[Sample]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    payload = target.body()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(worker: int) -> Sample:
            headers = dict(target.headers(f"w{worker}"))
            started = time.monotonic()
            try:
                async with session.post(
                    target.url + target.path, data=payload, headers=headers
                ) as response:
                    chunks = [(time.monotonic(), c) async for c in response.content.iter_any()]
                    status = response.status
            except aiohttp.ClientError:
                return Sample(ok=False)
            if status != 200 or not chunks:
                return Sample(ok=False)
            return Sample(chunks[0][0] - started, token_gaps(chunks))

        return await drive(one, concurrency, total, STAGGER)


async def cancel_times(target: Target, count: int, concurrency: int, tag: str) -> dict[str, float]:
    """Cancel `count` streams mid-generation; returns prompt -> when we cancelled.

    Each stream is reset after its first token and a short, varying wait, so
    cancels land at different points between two tokens. HTTP/2: RST_STREAM
    (CANCEL); HTTP/1.1: closing the connection, as a plugin does."""
    sent: dict[str, float] = {}
    clients = [H2Client(target.host, target.port)] if target.http2 else []

    async def one(worker: int) -> None:
        index = len(sent)
        prompt = f"# {tag} cancel {index}\n"
        sent[prompt] = 0.0
        delay = (index % 10) * 0.002
        if target.http2:
            stream = await clients[0].request(
                "POST", target.path, target.headers(f"c{index}"), target.body(prompt)
            )
            await stream.read_chunk()
            await asyncio.sleep(delay)
            sent[prompt] = time.monotonic()
            await stream.reset()
            return
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                target.url + target.path,
                data=target.body(prompt),
                headers=dict(target.headers(f"c{index}")),
            )
            await response.content.readany()
            await asyncio.sleep(delay)
            sent[prompt] = time.monotonic()
            response.close()  # drops the connection

    async def worker(index: int) -> None:
        while len(sent) < count:
            await one(index)
            await asyncio.sleep(0.01)

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for client in clients:
            await client.close()
    return sent


@dataclass(frozen=True, slots=True)
class LongConnection:
    requests: int
    succeeded: int
    connections_opened: int
    retries: int
    seconds: float


async def long_connection(target: Target, requests: int, concurrency: int) -> LongConnection:
    """`requests` streamed requests on one HTTP/2 connection, `concurrency` at a time.

    No request budget per connection on the client: a server that sends GOAWAY
    after N requests shows up as a second connection or a retry."""
    client = H2Client(target.host, target.port)
    payload = target.body()
    succeeded = 0
    started = time.monotonic()

    async def one(worker: int) -> Sample:
        nonlocal succeeded
        try:
            stream = await client.request(
                "POST", target.path, target.headers(f"w{worker}"), payload
            )
            data = await stream.read_all()
        except H2Error:
            return Sample(ok=False)
        if stream.status == 200 and data.rstrip().endswith(b"}"):
            succeeded += 1
        return Sample()

    try:
        await drive(one, concurrency, requests)
    finally:
        await client.close()
    return LongConnection(
        requests,
        succeeded,
        client.connections_opened,
        client.retries,
        time.monotonic() - started,
    )
