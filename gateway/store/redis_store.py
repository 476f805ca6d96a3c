"""The Redis store: state shared by every region and router instance (layout in base.py).

Every call is bounded: socket timeouts of `timeout` seconds, one immediate
retry on a broken connection only (redis-py's default retries for seconds), and
an overall deadline of twice `timeout`. Any failure leaves here as `StoreUnavailable` (Redis away or
slow) or `StoreCorrupted` (Redis answered with an error): nothing above this
module sees `redis.*`. It does not fall back by itself; `ResilientStore` does.

Every key written here either expires or has an owner who deletes it
(tests/gateway/store/test_redis_ttl.py runs every operation and checks this):

    key (under ghostgate:)  TTL, or owner
    key:<sha256>            owned: an API key's record, written by `ghostgate keys
                            create` (and `last_used_at` by the router), marked by
                            `keys revoke`, kept revoked for listings; only an
                            operator deletes it (DEL), with its `keys` entry
    keys                    owned: key id -> digest, the index of the records above
    revoked                 owned: revoked key ids, as long as their records
    revoked:tokens          EXPIREAT its latest member's expiry + 1 h (REVOKE_TOKEN),
                            pruned of expired members at every revocation
    rate:<user>             PEXPIRE the window, at every allowed request (RATE_LIMIT)
    streams:<user>          PEXPIRE the lease TTL at every acquire and renewal; an
                            empty set is no key (ACQUIRE_STREAM, RENEW_STREAMS)
    hb:<region>             SET PX the heartbeat's TTL (3 s)
    regions                 PEXPIRE the heartbeat's TTL, NX then GT, at every
                            heartbeat: it expires with the last heartbeat written
    cache:completion:<key>  SET PX `waste.cache_ttl` (600 s)
    cache:group:<group>     SET PX the group's TTL (120 s, gateway/shared.py)
    cancel:<instance>       a pub/sub channel, not a key: Redis keeps nothing
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Self, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT

from gateway.store import redis_scripts as lua
from gateway.store.base import (
    KeyRecord,
    Payload,
    RateDecision,
    Revocations,
    StoreCorrupted,
    StoreUnavailable,
    key_digest,
    new_key,
)
from gateway.store.redis_codec import (
    cancel_channel,
    decode_payload,
    key_fields,
    parse_key,
    text,
)
from gateway.store.redis_leases import StreamLeases

P = "ghostgate:"
# A revoked-token set outlives its latest member by this much, in case the
# clocks of Redis and of the instances that read it disagree.
REVOKED_TOKENS_GRACE = 3600
T = TypeVar("T")
log = logging.getLogger("ghostgate.store")


class RedisStore:
    """A `Store` on one Redis; raises `StoreUnavailable` instead of falling back."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.25,
        lease_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._clock = clock
        self._client: Redis | None = None
        self._nonces = itertools.count()
        self._rate: AsyncScript | None = None
        self._revoke: AsyncScript | None = None
        self.leases = StreamLeases(self._run, lease_ttl)

    def __repr__(self) -> str:
        return f"RedisStore({self.leases!r}, open={self._client is not None})"

    @property
    def degraded(self) -> bool:
        return False

    def status(self) -> dict[str, object]:
        return {"backend": "redis", "degraded": False}

    async def __aenter__(self) -> Self:
        self._client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            # One immediate retry, on connection errors only: it replaces a pooled
            # connection that a Redis restart broke, without waiting on a slow Redis.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
        )
        self.leases.bind(self._client, lua.ACQUIRE_STREAM, lua.RENEW_STREAMS)
        self._rate = self._client.register_script(lua.RATE_LIMIT)
        self._revoke = self._client.register_script(lua.REVOKE_TOKEN)
        await self.leases.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.leases.__aexit__(*exc_info)
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()

    @property
    def redis(self) -> Redis:
        if self._client is None:
            raise RuntimeError("the store is not open: use `async with store:`")
        return self._client

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis exchange under the deadline, mapping every foreign error."""
        try:
            async with asyncio.timeout(self.timeout * 2):
                return await call()
        except ResponseError as exc:
            raise StoreCorrupted(f"redis refused {what}: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis {what}: {exc!r}") from exc

    async def ping(self) -> None:
        """Succeeds when Redis answers; `StoreUnavailable` otherwise."""
        await self._run("ping", self.redis.ping)

    # API keys and revocations.

    async def create_key(self, user: str) -> tuple[KeyRecord, str]:
        record, secret, digest = new_key(user, self._clock())
        await self.insert_key(record, digest)
        return record, secret

    async def insert_key(self, record: KeyRecord, digest: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(f"{P}key:{digest}", mapping=key_fields(record))
        pipe.hsetnx(f"{P}keys", record.key_id, digest)
        if record.revoked_at is not None:
            pipe.sadd(f"{P}revoked", record.key_id)
        await self._run("insert key", pipe.execute)

    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None:
        return await self.find_digest(key_digest(secret), touch=touch)

    async def find_digest(self, digest: str, *, touch: bool = True) -> KeyRecord | None:
        """The active key with this digest (last use noted if `touch`), or None."""
        name = f"{P}key:{digest}"
        fields = await self._run("find key", lambda: self.redis.hgetall(name))
        record = parse_key(fields)
        if record is None or not record.active:
            return None
        if not touch:
            return record
        now = self._clock()
        await self._run("touch key", lambda: self.redis.hset(name, "last_used_at", repr(now)))
        return replace(record, last_used_at=now)

    async def list_keys(self) -> list[KeyRecord]:
        index = await self._run("list keys", lambda: self.redis.hgetall(f"{P}keys"))
        pipe = self.redis.pipeline(transaction=False)
        for digest in index.values():
            pipe.hgetall(f"{P}key:{text(digest)}")
        rows: list[Any] = await self._run("list keys", pipe.execute)
        records = [r for r in map(parse_key, rows) if r is not None]
        return sorted(records, key=lambda r: r.created_at)

    async def revoke_key(self, key_id: str) -> bool:
        digest = await self._run("revoke key", lambda: self.redis.hget(f"{P}keys", key_id))
        if digest is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(f"{P}revoked", key_id)
        pipe.hsetnx(f"{P}key:{text(digest)}", "revoked_at", repr(self._clock()))
        _, fresh = await self._run("revoke key", pipe.execute)
        return bool(fresh)

    async def revoke_token(self, token_id: str, expires_at: float) -> None:
        script = self._revoke
        if script is None:
            raise RuntimeError("the store is not open: use `async with store:`")
        args: list[EncodableT] = [self._clock(), token_id, expires_at, REVOKED_TOKENS_GRACE]
        keys = [f"{P}revoked:tokens"]
        await self._run("revoke token", lambda: script(keys=keys, args=args))

    async def revocations(self) -> Revocations:
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(f"{P}revoked")
        pipe.zrangebyscore(f"{P}revoked:tokens", self._clock(), "+inf")
        keys, tokens = await self._run("read revocations", pipe.execute)
        return Revocations(frozenset(map(text, keys)), frozenset(map(text, tokens)))

    # Limits: atomic Lua scripts (redis_scripts.py).

    async def rate_limit(self, user: str, limit: int, window: float = 60.0) -> RateDecision:
        nonce = f"{self.leases.instance}:{next(self._nonces)}"
        args: list[EncodableT] = [limit, int(window * 1000), nonce]
        script = self._rate
        if script is None:
            raise RuntimeError("the store is not open: use `async with store:`")
        result = await self._run("rate limit", lambda: script(keys=[f"{P}rate:{user}"], args=args))
        allowed, remaining, retry_ms = (int(x) for x in result)
        return RateDecision(bool(allowed), retry_ms / 1000, remaining)

    async def acquire_stream(self, user: str, limit: int, n: int = 1) -> bool:
        return await self.leases.acquire(f"{P}streams:{user}", limit, n)

    async def release_stream(self, user: str, n: int = 1) -> None:
        await self.leases.release(f"{P}streams:{user}", n)

    def forget_stream(self, user: str, n: int = 1) -> None:
        """Stop renewing `n` of `user`'s leases without telling Redis (it is away)."""
        self.leases.forget(f"{P}streams:{user}", n)

    # Heartbeats, cache, cancel messages.

    async def publish_heartbeat(self, region: str, payload: Payload, ttl: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        ms = max(1, int(ttl * 1000))
        pipe.set(f"{P}hb:{region}", json.dumps(payload), px=ms)
        pipe.sadd(f"{P}regions", region)
        # The index expires with the last heartbeat written: NX gives a new set
        # its TTL, GT only ever extends it.
        pipe.pexpire(f"{P}regions", ms, nx=True)
        pipe.pexpire(f"{P}regions", ms, gt=True)
        await self._run("heartbeat", pipe.execute)

    async def heartbeats(self) -> dict[str, Payload]:
        names = sorted(
            map(text, await self._run("regions", lambda: self.redis.smembers(f"{P}regions")))
        )
        if not names:
            return {}
        values = await self._run(
            "heartbeats", lambda: self.redis.mget([f"{P}hb:{n}" for n in names])
        )
        beats = {name: decode_payload(value) for name, value in zip(names, values, strict=True)}
        return {name: beat for name, beat in beats.items() if beat is not None}

    async def cache_get(self, key: str) -> bytes | None:
        value = await self._run("cache get", lambda: self.redis.get(f"{P}cache:{key}"))
        return value if isinstance(value, bytes) else None

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        ms = max(1, int(ttl * 1000))
        await self._run("cache set", lambda: self.redis.set(f"{P}cache:{key}", value, px=ms))

    async def publish_cancel(self, instance: str, message: Payload) -> None:
        data = json.dumps(message)
        await self._run("publish", lambda: self.redis.publish(cancel_channel(instance), data))

    @asynccontextmanager
    async def subscribe_cancels(self, instance: str) -> AsyncIterator[AsyncIterator[Payload]]:
        """Subscribed (confirmed by Redis) on entry; the iterator raises `StoreUnavailable`
        when the connection is lost."""
        pubsub = self.redis.pubsub()
        try:
            await self._run("subscribe", lambda: _subscribe(pubsub, cancel_channel(instance)))
            yield _Messages(pubsub)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _subscribe(pubsub: PubSub, channel: str) -> None:
    await pubsub.subscribe(channel)
    # Wait for Redis to confirm, so messages published after entry are not missed.
    while (await pubsub.get_message(timeout=1.0)) is None:
        pass


class _Messages:
    """The cancel messages of one Redis subscription, decoded."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Payload:
        while True:
            message = await self._receive()
            payload = decode_payload(message.get("data")) if message else None
            if payload is not None:
                return payload

    async def _receive(self) -> dict[str, Any] | None:
        try:
            message: dict[str, Any] | None = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=1.0
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis subscription lost: {exc!r}") from exc
        return message
