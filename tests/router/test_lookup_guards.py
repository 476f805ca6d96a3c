"""Guards on the API key store: failed lookups limited per address, unknown keys
remembered for a few seconds, `last_used_at` written at most once a minute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import RateLimited, Unauthorized
from gateway.store.base import KeyRecord, key_digest
from router import config
from router.app import create_app
from router.grants import FailureLimiter, Recent, TokenIssuer, client_key
from router.keyring import KeyRing
from router.settings import RouterSettings, TokenSettings

GOOD = "gg_secret-of-alice"
ATTACKER = "203.0.113.7"
DEVELOPER = "198.51.100.20"


class CountingStore:
    """A key store that counts what it was asked: lookups, and writes of last_used_at."""

    def __init__(self) -> None:
        self.records = {key_digest(GOOD): KeyRecord("k1", "alice", 0.0)}
        self.lookups = 0
        self.touches = 0

    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None:
        self.lookups += 1
        record = self.records.get(key_digest(secret))
        if record is not None and touch:
            self.touches += 1
        return record


class NoRevocations:
    def is_revoked(self, token_id: str, subject: str) -> bool:
        return False


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Parts:
    def __init__(self, tmp_path: Path, settings: TokenSettings | None = None) -> None:
        self.store, self.clock = CountingStore(), Clock()
        self.outcomes: list[str] = []
        self.issuer = TokenIssuer(
            self.store,
            KeyRing(tmp_path).load(),
            NoRevocations(),
            settings or TokenSettings(),
            clock=self.clock,
            on_failed_lookup=self.outcomes.append,
        )


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return Parts(tmp_path)


def bad_key(n: int) -> str:
    return f"gg_guessed-{n}"


# The structures, on plain data.


def test_failure_limiter_is_a_bucket_of_twenty_refilled_one_every_three_seconds() -> None:
    limiter = FailureLimiter(per_minute=20, max_addresses=100)
    assert [limiter.take("a", 0.0) for _ in range(20)] == [0.0] * 20
    assert limiter.take("a", 0.0) == pytest.approx(3.0)
    assert limiter.take("a", 1.5) == pytest.approx(1.5)  # refused tries do not push it back
    assert limiter.take("a", 3.0) == 0.0
    assert limiter.take("a", 3.0) == pytest.approx(3.0)
    assert limiter.take("b", 3.0) == 0.0  # another address has its own bucket
    limiter.refund("a", 3.0)  # the key was found: that try was no failure
    assert limiter.take("a", 3.0) == 0.0


def test_failure_limiter_tracks_a_bounded_number_of_addresses() -> None:
    limiter = FailureLimiter(per_minute=2, max_addresses=2)
    for address in ("a", "b"):
        limiter.take(address, 0.0)
        limiter.take(address, 0.0)
    assert limiter.take("a", 0.0) > 0  # touched: now the newest
    limiter.take("c", 0.0)  # the oldest, "b", goes
    assert len(limiter) == 2 and limiter.take("b", 0.0) == 0.0
    limiter.refund("b", 0.0)  # full again: forgotten, as if never seen
    assert len(limiter) == 1
    off = FailureLimiter(per_minute=0, max_addresses=2)
    assert all(off.take("a", 0.0) == 0.0 for _ in range(100)) and len(off) == 0


def test_client_key_groups_an_ipv6_host_by_its_slash_64() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"  # dual-stack sockets
    assert client_key(None) == client_key("")


def test_recent_forgets_after_its_ttl_and_past_its_size() -> None:
    recent = Recent(ttl=5.0, size=2)
    recent.add("x", 0.0)
    assert recent.holds("x", 4.9) and not recent.holds("x", 5.0)
    for key in ("a", "b", "c"):
        recent.add(key, 10.0)
    assert len(recent) == 2 and not recent.holds("a", 10.0) and recent.holds("c", 10.0)
    recent.discard("c")
    assert not recent.holds("c", 10.0)
    off = Recent(ttl=0.0, size=2)
    off.add("x", 0.0)
    assert not off.holds("x", 0.0)


# The issuer.


@pytest.mark.anyio
async def test_25_bad_keys_from_one_address_cost_at_most_20_lookups(parts: Parts) -> None:
    refused: list[RateLimited] = []
    for n in range(25):
        try:
            await parts.issuer.issue(bad_key(n), ATTACKER)
        except Unauthorized:
            assert n < 20
        except RateLimited as exc:
            refused.append(exc)
    assert len(refused) == 5 and all(exc.retry_after == pytest.approx(3.0) for exc in refused)
    assert parts.store.lookups == 20
    assert parts.outcomes == ["looked_up"] * 20 + ["limited"] * 5
    with pytest.raises(Unauthorized):  # another address is not affected
        await parts.issuer.issue(bad_key(99), DEVELOPER)
    assert parts.store.lookups == 21
    # Through forward mode's path, too.
    with pytest.raises(RateLimited):
        await parts.issuer.grant(bad_key(100), ATTACKER)
    assert parts.store.lookups == 21


@pytest.mark.anyio
async def test_a_known_good_key_works_from_a_limited_address(parts: Parts) -> None:
    await parts.issuer.issue(GOOD, DEVELOPER)  # known from now on (cached)
    for n in range(21):
        with pytest.raises((Unauthorized, RateLimited)):
            await parts.issuer.issue(bad_key(n), ATTACKER)
    # The developer shares the attacker's NAT address: a known key still works
    # (and its lookup is no failed one), on /v1/token and in forward mode.
    assert (await parts.issuer.issue(GOOD, ATTACKER)).user == "alice"
    assert (await parts.issuer.grant(GOOD, ATTACKER)).user == "alice"


@pytest.mark.anyio
async def test_an_uncached_good_key_from_a_limited_address_is_refused(parts: Parts) -> None:
    for n in range(20):
        with pytest.raises(Unauthorized):
            await parts.issuer.issue(bad_key(n), ATTACKER)
    lookups = parts.store.lookups
    with pytest.raises(RateLimited):
        await parts.issuer.issue(GOOD, ATTACKER)
    assert parts.store.lookups == lookups
    parts.clock.now += 3.0  # one try more
    assert (await parts.issuer.issue(GOOD, ATTACKER)).user == "alice"


@pytest.mark.anyio
async def test_good_lookups_do_not_use_up_the_budget(parts: Parts) -> None:
    parts.store.records[key_digest("gg_bob")] = KeyRecord("k2", "bob", 0.0)
    for n in range(19):
        with pytest.raises(Unauthorized):
            await parts.issuer.issue(bad_key(n), ATTACKER)  # 19 failures
    await parts.issuer.issue("gg_bob", ATTACKER)  # found: refunded
    with pytest.raises(Unauthorized):
        await parts.issuer.issue(bad_key(1000), ATTACKER)  # the 20th failure is allowed
    with pytest.raises(RateLimited):
        await parts.issuer.issue(bad_key(1001), ATTACKER)


@pytest.mark.anyio
async def test_a_repeated_unknown_key_costs_one_lookup_in_five_seconds(parts: Parts) -> None:
    for _ in range(10):
        with pytest.raises(Unauthorized, match="unknown or revoked"):
            await parts.issuer.issue(bad_key(1), DEVELOPER)
        parts.clock.now += 0.4
    assert parts.store.lookups == 1
    assert parts.outcomes == ["looked_up"] + ["negative_cached"] * 9
    parts.clock.now += 1.1  # 5 s after the lookup
    with pytest.raises(Unauthorized):
        await parts.issuer.issue(bad_key(1), DEVELOPER)
    assert parts.store.lookups == 2


@pytest.mark.anyio
async def test_negative_cache_hits_still_count_as_failed_lookups(parts: Parts) -> None:
    for _ in range(20):
        with pytest.raises(Unauthorized):
            await parts.issuer.issue(bad_key(1), ATTACKER)
    with pytest.raises(RateLimited):
        await parts.issuer.issue(bad_key(1), ATTACKER)
    assert parts.store.lookups == 1


@pytest.mark.anyio
async def test_a_key_created_meanwhile_works_after_the_ttl(parts: Parts) -> None:
    fresh = "gg_just-created"
    with pytest.raises(Unauthorized):
        await parts.issuer.issue(fresh, DEVELOPER)
    parts.store.records[key_digest(fresh)] = KeyRecord("k9", "carol", 0.0)
    with pytest.raises(Unauthorized):
        await parts.issuer.issue(fresh, DEVELOPER)
    parts.clock.now += 5.0
    assert (await parts.issuer.issue(fresh, DEVELOPER)).user == "carol"


@pytest.mark.anyio
async def test_revocation_still_refuses_a_key_at_once(parts: Parts) -> None:
    await parts.issuer.issue(GOOD, DEVELOPER)
    await parts.issuer.grant(GOOD, DEVELOPER)
    del parts.store.records[key_digest(GOOD)]  # revoked: the store no longer finds it
    with pytest.raises(Unauthorized):
        await parts.issuer.issue(GOOD, DEVELOPER)  # /v1/token reads the store every time
    assert parts.outcomes == ["looked_up"]
    with pytest.raises(Unauthorized):  # and forward mode's cached grant is gone with it
        await parts.issuer.grant(GOOD, DEVELOPER)


@pytest.mark.anyio
async def test_last_used_at_is_written_once_a_minute(parts: Parts) -> None:
    for _ in range(100):
        await parts.issuer.issue(GOOD, DEVELOPER)
        parts.clock.now += 1.0  # 100 uses over 100 s
    assert parts.store.lookups == 100  # every /v1/token still reads the key
    assert parts.store.touches == 2  # at 0 s and at 60 s
    for _ in range(100):
        await parts.issuer.grant(GOOD, DEVELOPER)
    assert parts.store.touches == 2


@pytest.mark.anyio
async def test_the_guards_follow_their_settings(tmp_path: Path) -> None:
    settings = TokenSettings(
        failed_lookups_per_minute=2, negative_cache_seconds=0.0, last_used_interval=0.0
    )
    parts = Parts(tmp_path, settings)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await parts.issuer.issue(bad_key(1), ATTACKER)
    with pytest.raises(RateLimited) as info:
        await parts.issuer.issue(bad_key(1), ATTACKER)
    assert info.value.retry_after == pytest.approx(30.0)
    assert parts.store.lookups == 2  # no negative cache: the same key was looked up twice
    await parts.issuer.issue(GOOD, DEVELOPER)
    await parts.issuer.issue(GOOD, DEVELOPER)
    assert parts.store.touches == 2


def test_the_guards_load_from_toml_and_are_checked(tmp_path: Path) -> None:
    defaults = TokenSettings()
    assert (defaults.failed_lookups_per_minute, defaults.lookup_limiter_addresses) == (20, 100_000)
    assert (defaults.negative_cache_seconds, defaults.last_used_interval) == (5.0, 60.0)
    table = {
        "failed_lookups_per_minute": 5,
        "lookup_limiter_addresses": 10,
        "negative_cache_seconds": 2,
        "negative_cache_entries": 100,
        "last_used_interval": 300,
    }
    tokens = config.check(config.from_document({"router": {"tokens": table}})).tokens
    assert (tokens.failed_lookups_per_minute, tokens.negative_cache_seconds) == (5, 2.0)
    assert (tokens.lookup_limiter_addresses, tokens.negative_cache_entries) == (10, 100)
    assert tokens.last_used_interval == 300.0
    for bad in ({"failed_lookups_per_minute": -1}, {"lookup_limiter_addresses": 0}):
        with pytest.raises(config.ConfigError, match=r"tokens\.\w+ must be >= "):
            config.check(config.from_document({"router": {"tokens": bad}}))


# Through the router's boundary: the status, the header and the dialect.


async def call(app: Any, method: str, path: str, key: str, address: str) -> tuple[int, Any, Any]:
    scope = {
        "type": "http",
        "http_version": "2",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "client": (address, 40000),
        "headers": [(b"authorization", f"Bearer {key}".encode())],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], headers, json.loads(body)


@pytest.mark.anyio
async def test_the_client_gets_429_with_retry_after_in_its_dialect(tmp_path: Path) -> None:
    app, services = create_app(RouterSettings(state_dir=tmp_path))
    store = CountingStore()
    services.issuer._store = store  # type: ignore[assignment]
    for n in range(20):
        status, _, _ = await call(app, "POST", "/v1/token", bad_key(n), ATTACKER)
        assert status == 401
    status, headers, body = await call(app, "POST", "/v1/token", bad_key(20), ATTACKER)
    assert status == 429 and headers[b"retry-after"] == b"3"
    assert body["error"]["type"] == "rate_limit_error"  # OpenAI's shape: the router's own
    status, headers, body = await call(app, "POST", "/api/generate", bad_key(21), ATTACKER)
    assert status == 429 and headers[b"retry-after"] == b"3"
    assert isinstance(body["error"], str)  # a forwarded Ollama path: Ollama's shape
    status, _, _ = await call(app, "POST", "/v1/token", bad_key(22), DEVELOPER)
    assert status == 401
    assert store.lookups == 21
    exposition = services.metrics.exposition().decode()
    assert 'ghostgate_key_lookup_failures_total{outcome="limited"} 2.0' in exposition
    assert 'ghostgate_key_lookup_failures_total{outcome="looked_up"} 21.0' in exposition
