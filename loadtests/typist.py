"""Typing developers for the locust scenario (`loadtests/locustfile.py`), without locust.

Locust runs its users as gevent greenlets and monkey-patches the standard
library; Ghostgate's HTTP/2 client is asyncio. The two meet here:

    LoopThread   one asyncio (uvloop) event loop on a native thread per locust
                 process; every user's connection and stream lives on it
    Developer    one user's HTTP/2 connection to its region and the request in
                 flight; driven from the user's greenlet through thread-safe calls
    Attempt      one completion request as the loop thread saw it: time to first
                 token, bytes, how it ended (completed, cancelled, superseded,
                 failed); the greenlet reads it once `done` is set
    Grant        a token from the router: region, proxy URL, when to refresh

The greenlet never blocks on the loop: it submits work with
`call_soon_threadsafe`, sleeps like a typing developer, and collects finished
attempts between keystrokes. No concurrent.futures and no gevent primitive
crosses the thread boundary, so gevent's patched locks never meet a native
thread. Nothing in this module imports locust or gevent: it is unit-tested
in a normal process.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.http2 import H2Client, H2Error, H2Stream, StreamReset

MODEL = "starcoder2:3b"
SUFFIX = "\n\n\nif __name__ == '__main__':\n    main()\n"
CODE = (
    "def parse_config(path):\n    with open(path) as handle:\n        return json.load(handle)\n"
    "class Cache:\n    def __init__(self, size):\n        self.size = size\n"
    "        self.items = {}\n"
    "for index, item in enumerate(items):\n    if item is None:\n        continue\n"
)
# Where developers sit, one per region of the local cluster (router/regions.py
# has the regions' coordinates): Seattle, New York, London, Tokyo.
LOCATIONS = ("47.61,-122.33", "40.71,-74.01", "51.51,-0.13", "35.68,139.69")


class MissingKey(RuntimeError):
    """No API key in the environment and no run.json to read one from."""


def api_key(env: Mapping[str, str]) -> str:
    """`GHOSTGATE_API_KEY`, else `api_key` from run.json in `GHOSTGATE_STATE_DIR`
    (default `.ghostgate`), which `python run.py --multi-region` writes."""
    key = env.get("GHOSTGATE_API_KEY", "").strip()
    if key:
        return key
    path = Path(env.get("GHOSTGATE_STATE_DIR") or ".ghostgate") / "run.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MissingKey(
            f"no GHOSTGATE_API_KEY and no readable {path} ({type(exc).__name__}); "
            "start the cluster with `python run.py --multi-region` or set GHOSTGATE_API_KEY"
        ) from None
    found = info.get("api_key") if isinstance(info, dict) else None
    if not isinstance(found, str) or not found:
        raise MissingKey(f"{path} has no api_key: is the router running (--multi-region)?")
    return found


@dataclass(frozen=True, slots=True)
class Grant:
    """A token from `POST /v1/token`. The token never appears in a repr."""

    token: str = field(repr=False)
    region: str
    proxy: str  # the region's URL: endpoints.proxy
    refresh_at: float  # time.monotonic() after which a new token is fetched

    def due(self, now: float) -> bool:
        return now >= self.refresh_at


def parse_grant(payload: Mapping[str, Any], now: float) -> Grant:
    """A grant from the router's answer, received at `now` (monotonic)."""
    endpoints = payload.get("endpoints") or {}
    return Grant(
        token=str(payload["token"]),
        region=str(payload.get("region") or "router"),
        proxy=str(endpoints.get("proxy") or endpoints.get("api")),
        refresh_at=now + float(payload.get("refresh_in") or 60),
    )


def fetch_grant(router: str, key: str, location: str, timeout: float = 10.0) -> Grant:
    """A token for a developer at `location`, as an editor plugin fetches one.

    Plain urllib: under locust, gevent has made it cooperative."""
    request = urllib.request.Request(
        router.rstrip("/") + "/v1/token",
        method="POST",
        headers={"Authorization": f"Bearer {key}", "X-Client-Location": location},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    return parse_grant(payload, time.monotonic())


@dataclass(frozen=True, slots=True)
class Keystroke:
    text: str
    gap: float  # seconds until the next keystroke; the last one's gap is the pause


def typing_burst(
    rng: random.Random,
    source: str,
    position: int,
    keys: tuple[int, int] = (3, 12),
    gap: tuple[float, float] = (0.06, 0.18),
    pause: tuple[float, float] = (0.4, 1.5),
) -> list[Keystroke]:
    """One burst of typing from `source` at `position`, ended by a pause."""
    count = rng.randint(*keys)
    strokes = []
    for index in range(count):
        last = index == count - 1
        wait = rng.uniform(*pause) if last else rng.uniform(*gap)
        strokes.append(Keystroke(source[(position + index) % len(source)], wait))
    return strokes


def outcome_of(last_bytes: bytes) -> str:
    """`superseded` when the stream's last NDJSON line says so, else `completed`."""
    line = last_bytes.rstrip().rpartition(b"\n")[2]
    try:
        final = json.loads(line)
    except ValueError:
        return "completed"
    if isinstance(final, dict) and final.get("done_reason") == "superseded":
        return "superseded"
    return "completed"


@dataclass(slots=True, eq=False)
class Attempt:
    """One completion request. Written by the loop thread; read by the greenlet
    after `done` (a plain attribute: the GIL orders the writes before it)."""

    region: str
    started: float = 0.0  # time.perf_counter(), as are the other times
    first_byte: float | None = None
    ended: float | None = None
    body_bytes: int = 0
    outcome: str = "pending"  # completed | cancelled | superseded | failed
    error: str = ""
    done: bool = False
    cancel_requested: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    stream: H2Stream | None = field(default=None, repr=False)

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_byte is None else (self.first_byte - self.started) * 1000

    @property
    def duration_ms(self) -> float:
        return ((self.ended or self.started) - self.started) * 1000

    def finish(self, outcome: str, error: str = "") -> None:
        if not self.done:
            self.outcome, self.error, self.ended = outcome, error, time.perf_counter()
            self.done = True


def _start_daemon(run: Callable[[], None]) -> None:
    threading.Thread(target=run, name="ghostgate-loop", daemon=True).start()


class LoopThread:
    """An asyncio event loop (uvloop when installed) running on its own native thread.

    `start_thread` starts `run` on a native thread; under gevent pass the
    unpatched `_thread.start_new_thread`, since a patched `threading.Thread`
    is a greenlet and would block every user.
    """

    def __init__(self, start_thread: Callable[[Callable[[], None]], object] = _start_daemon):
        self._start_thread = start_thread
        self._ready = threading.Event() if start_thread is _start_daemon else None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        try:
            import uvloop

            self.loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a pinned dependency
            self.loop = asyncio.new_event_loop()
        self._start_thread(self._run)

    def _run(self) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task on the loop; thread-safe, returns at once."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._create_task, work)

    def call(self, function: Callable[[], object]) -> None:
        """Run `function` on the loop thread soon; thread-safe."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(function)

    def _create_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(_quiet)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)


def _quiet(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # already recorded in the attempt; do not log it again


class Developer:
    """One typing developer's connection and requests, used from their greenlet.

    Every method returns at once; the work happens on the loop thread. A
    developer whose plugin `cancels` resets the stream in flight when they type
    on (RST_STREAM, so the gateway closes the upstream at once); one that does
    not leaves it, and the gateway supersedes it when the next request of the
    same group arrives.
    """

    def __init__(self, loop: LoopThread, group: str, model: str = MODEL) -> None:
        self._loop = loop
        self.group = group
        self.model = model
        self._client: H2Client | None = None
        self._client_url = ""

    def complete(self, grant: Grant, prompt: str) -> Attempt:
        """Send a completion request for `prompt`; returns its attempt at once."""
        attempt = Attempt(grant.region)
        body = json.dumps(
            {
                "model": self.model,
                "prompt": prompt,
                "suffix": SUFFIX,
                "stream": True,
                "options": {"num_predict": 32, "temperature": 0.2},
            }
        ).encode()
        headers = [
            ("content-type", "application/json"),
            ("authorization", f"Bearer {grant.token}"),
            ("x-ghostgate-group", self.group),
            ("user-agent", "ghostgate-locust/1"),
        ]
        self._loop.spawn(self._run(attempt, grant.proxy, headers, body))
        return attempt

    def cancel(self, attempt: Attempt) -> None:
        """The developer typed on: reset the stream now (RST_STREAM CANCEL)."""
        attempt.cancel_requested = True
        self._loop.call(lambda: _cancel(attempt))

    def close(self) -> None:
        self._loop.spawn(self._close())

    async def _run(
        self, attempt: Attempt, proxy: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        attempt.task = asyncio.current_task()
        attempt.started = time.perf_counter()
        if attempt.cancel_requested:
            attempt.finish("cancelled")
            return
        try:
            client = await self._connection(proxy)
            stream = attempt.stream = await client.request("POST", "/api/generate", headers, body)
            if stream.status != 200:
                detail = (await stream.read_all())[:200].decode("utf-8", "replace")
                attempt.finish("failed", f"HTTP {stream.status}: {detail}")
                return
            tail = b""
            async for chunk in stream:
                if attempt.first_byte is None:
                    attempt.first_byte = time.perf_counter()
                attempt.body_bytes += len(chunk)
                tail = (tail + chunk)[-1024:]
            attempt.finish(outcome_of(tail))
        except asyncio.CancelledError:
            attempt.finish("cancelled")  # reset before its headers came (H2Connection did)
            raise
        except StreamReset as exc:
            attempt.finish("cancelled" if not exc.remote else "failed", str(exc))
        except H2Error as exc:
            attempt.finish("failed", str(exc))
        finally:
            attempt.stream = None

    async def _connection(self, proxy: str) -> H2Client:
        """One HTTP/2 connection to the developer's region, kept for the whole run;
        a new one only when a token refresh moves them to another region."""
        if self._client is None or proxy != self._client_url:
            old = self._client
            parts = urllib.parse.urlsplit(proxy)
            self._client = H2Client(parts.hostname or "127.0.0.1", parts.port or 80)
            self._client_url = proxy
            if old is not None:
                await old.close()
        return self._client

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _cancel(attempt: Attempt) -> None:
    """On the loop thread: reset the stream if the headers are in, else cancel the
    task waiting for them (H2Connection resets the stream it had opened)."""
    if attempt.done:
        return
    if attempt.stream is not None:
        stream = attempt.stream
        asyncio.ensure_future(stream.reset()).add_done_callback(_quiet)
    elif attempt.task is not None:
        attempt.task.cancel()
