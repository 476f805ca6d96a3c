"""Concurrent-stream counts on Redis as leases, so a crashed instance cannot leak them.

A stream is a member of the user's sorted set whose score is its expiry. The
instance that took it renews it every third of the TTL while the stream runs,
and removes it on release. If the instance dies, nobody renews, and the next
acquire after the TTL drops it: a leaked count lasts at most one TTL, however
busy the user stays (a plain INCR with EXPIRE would leak for as long as the
user keeps the key alive).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.typing import EncodableT

from gateway.lifecycle import BackgroundLoop
from gateway.store.base import StoreError

T = TypeVar("T")
log = logging.getLogger("ghostgate.store")


class Runner(Protocol):
    """Runs one Redis exchange with the store's deadline and error mapping."""

    def __call__(self, what: str, call: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


class StreamLeases(BackgroundLoop):
    """The stream leases this instance holds, by Redis key; renewed by a task while open."""

    def __init__(self, run: Runner, ttl: float) -> None:
        super().__init__("stream-lease-renewal")
        self.instance = secrets.token_hex(8)
        self.ttl = ttl
        self._run = run
        self._ids = itertools.count()
        self._held: dict[str, list[str]] = {}
        self._client: Redis | None = None
        self._acquire: AsyncScript | None = None
        self._renew: AsyncScript | None = None

    def __repr__(self) -> str:
        held = {name: len(leases) for name, leases in self._held.items()}
        return f"StreamLeases(instance={self.instance!r}, held={held!r})"

    def bind(self, client: Redis, acquire_lua: str, renew_lua: str) -> None:
        self._client = client
        self._acquire = client.register_script(acquire_lua)
        self._renew = client.register_script(renew_lua)

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    async def acquire(self, name: str, limit: int, n: int = 1) -> bool:
        """Take `n` leases under `limit`, all or none (one script, so atomic).
        If the reply is lost, the leases expire by themselves."""
        script = self._script(self._acquire)
        leases = [f"{self.instance}:{next(self._ids)}" for _ in range(n)]
        args: list[EncodableT] = [limit, self.ttl_ms, *leases]
        taken = await self._run("acquire stream", lambda: script(keys=[name], args=args))
        if taken:
            self._held.setdefault(name, []).extend(leases)
        return bool(taken)

    async def release(self, name: str, n: int = 1) -> None:
        """Give back `n` leases. Forgotten first, so a failed ZREM cannot be renewed forever."""
        leases = self.forget(name, n)
        if not leases:
            return
        client = self._require(self._client)
        await self._run("release stream", lambda: client.zrem(name, *leases))

    def forget(self, name: str, n: int = 1) -> list[str]:
        """Stop holding `n` leases of `name`; Redis drops them when their TTL runs out."""
        leases = self._held.get(name)
        if not leases:
            return []
        dropped = leases[-n:] if n > 0 else []
        del leases[len(leases) - len(dropped) :]
        if not leases:
            del self._held[name]
        return dropped

    async def renew(self) -> None:
        script = self._script(self._renew)
        for name, leases in list(self._held.items()):
            args: list[EncodableT] = [self.ttl_ms, *leases]
            await self._run("renew streams", functools.partial(script, keys=[name], args=args))

    async def _close(self) -> None:
        # A clean shutdown hands its streams back now instead of after a TTL.
        for name in list(self._held):
            while name in self._held:
                try:
                    await self.release(name)
                except StoreError:
                    self._held.pop(name, None)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.renew()
            except StoreError as exc:
                # Redis is away; leases may lapse, which only frees capacity.
                log.debug("stream lease renewal failed: %s", exc)

    @staticmethod
    def _script(script: AsyncScript | None) -> AsyncScript:
        return StreamLeases._require(script)

    @staticmethod
    def _require(value: T | None) -> T:
        if value is None:
            raise RuntimeError("the store is not open: use `async with store:`")
        return value
