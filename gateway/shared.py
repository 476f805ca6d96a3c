"""A region's use of the shared-state store: revocations, per-user limits,
heartbeats, and superseding across instances.

Opened and closed by the lifespan with everything else. Without Redis the store
is embedded (memory plus SQLite in the state dir, which the router and the CLI
share on one machine); with Redis every region and router instance sees the
same keys, revocations and limits, and a newer request at one instance can
supersede an older one held by another: the group's holder is recorded in the
store, and a cancel message goes to that instance's channel.

A store failure never fails a request: the store itself falls back to local
state, and anything that still escapes is logged here and ignored. With a state
dir, the last revocations seen are kept in `<state-dir>/revocations.json`, so a
region restarted while Redis is away still refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from gateway.completion import Supersessions
from gateway.settings import StoreSettings
from gateway.store import (
    Payload,
    RevocationCache,
    Store,
    StoreError,
    open_store,
    revocations_file,
)

log = logging.getLogger("ghostgate.shared")

HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL = 3.0
GROUP_TTL = 120.0


class SharedState:
    """The store and the background work around it, for one region process."""

    def __init__(
        self,
        region: str,
        state_dir: Path | None,
        redis_url: str | None,
        supersessions: Supersessions,
        store: StoreSettings | None = None,
    ) -> None:
        self.region = region
        self.instance = f"{region}-{os.getpid()}-{secrets.token_hex(3)}"
        self.redis = bool(redis_url)
        # No state dir: keys live in the router's, and the embedded store keeps
        # its own in a private in-memory database.
        self.store: Store = open_store(state_dir, redis_url, store)
        self.revocations = RevocationCache(self.store, path=revocations_file(state_dir))
        self._supersessions = supersessions
        # What this region reports to the router through the store; set by
        # the owner once it exists.
        self.heartbeat: Callable[[], Payload] = dict
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SharedState:
        await self.store.__aenter__()
        await self.revocations.__aenter__()
        self._tasks.append(asyncio.create_task(self._beat(), name="heartbeat"))
        if self.redis:
            self._tasks.append(asyncio.create_task(self._listen(), name="cancel-listener"))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.revocations.__aexit__(*exc_info)
        await self.store.__aexit__(*exc_info)

    @property
    def degraded(self) -> bool:
        return self.store.degraded

    async def check_rate(self, user: str, per_minute: int) -> None:
        """`RateLimited` (429) when `user` is over `per_minute` requests."""
        if per_minute > 0:
            (await self.store.rate_limit(user, per_minute)).check()

    async def acquire_stream(self, user: str, limit: int, n: int = 1) -> bool:
        """Take `n` of `user`'s `limit` generations at once (a request's choices),
        all or none; `limit` 0 is no limit."""
        return limit <= 0 or await self.store.acquire_stream(user, limit, n)

    async def release_stream(self, user: str, limit: int, n: int = 1) -> None:
        if limit > 0:
            await self.store.release_stream(user, n)

    async def announce(self, group: str) -> None:
        """Record this instance as the group's holder; supersede a remote holder."""
        if not self.redis:
            return  # one process per region: the local registry is the whole truth
        key = f"group:{group}"
        try:
            holder = await self.store.cache_get(key)
            await self.store.cache_set(key, self.instance.encode(), GROUP_TTL)
            if holder and holder.decode() != self.instance:
                await self.store.publish_cancel(
                    holder.decode(), {"group": group, "before": time.time()}
                )
        except StoreError as exc:
            log.warning("group announce failed", extra={"error": str(exc)})

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                await self.store.publish_heartbeat(self.region, self.heartbeat(), HEARTBEAT_TTL)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _listen(self) -> None:
        async with self.store.subscribe_cancels(self.instance) as messages:
            async for message in messages:
                group, before = message.get("group"), message.get("before")
                if isinstance(group, str) and isinstance(before, int | float):
                    self._supersessions.cancel(group, float(before))
