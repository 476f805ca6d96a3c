"""One spelling per token, a cache bounded in bytes, finite integer claims, known scopes.

Every token here that must be refused is refused with a reason the
auth-failure metric can count, and none of them takes a cache entry.
"""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth import (
    DEFAULT_SCOPE,
    KNOWN_SCOPES,
    TokenVerifier,
    allows,
    key_id,
    mint,
    require_scope,
)
from gateway.errors import ClientError, Dialect, Forbidden, Unauthorized, render_error
from gateway.metrics import Metrics
from gateway.services import Services
from gateway.settings import AuthSettings, GatewaySettings

NOW = 1_800_000_000.0
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def verifier(key: Ed25519PrivateKey, **kw: object) -> TokenVerifier:
    return TokenVerifier([key.public_key()], clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def reason(v: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        v.verify(token)
    return info.value.reason


def signed(key: Ed25519PrivateKey, **claims: object) -> str:
    """A token signed with the real key: only its claims are wrong."""
    payload: dict[str, object] = {
        "iss": "ghostgate",
        "aud": "ghostgate",
        "sub": "alice",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
        "jti": "j1",
        "scope": "completions chat",
    }
    payload.update(claims)
    headers = {"kid": key_id(key.public_key())}
    return jwt.encode(payload, key, algorithm="EdDSA", headers=headers)


# -- 1. one strict spelling, refused before any parsing --------------------------------


def respelled(token: str) -> dict[str, str]:
    head, payload, sig = token.split(".")
    # The signature's last character carries 4 unused bits (86 characters for
    # 64 bytes): a decoder that ignores them would take 16 spellings of it.
    spare = ALPHABET[ALPHABET.index(sig[-1]) | 1]
    return {
        "padding": token + "==",
        "padding inside": f"{head}==.{payload}.{sig}",
        "plus": f"{head}.{payload}.+{sig[1:]}",
        "slash": f"{head}.{payload}.{sig[:-1]}/",
        "space": f"{head}.{payload}. {sig}",
        "tab": f"{head}.{payload}.{sig[:9]}\t{sig[9:]}",
        "newline": token + "\n",
        "four parts": token + ".e30",
        "empty part": f"{head}..{sig}",
        "empty signature": f"{head}.{payload}.",
        "non-ascii": f"{head}.{payload}.{sig[:-1]}é",
        "spare bits set": f"{head}.{payload}.{sig[:-1]}{spare}",
        "length 1 mod 4": f"{head}.{payload}.{sig}AAA",
    }


def test_other_spellings_of_a_good_token_are_malformed_and_not_cached(
    key: Ed25519PrivateKey,
) -> None:
    v = verifier(key)
    token, _ = mint(key, "alice", now=NOW)
    v.verify(token)
    for name, variant in respelled(token).items():
        assert reason(v, variant) == "malformed", name
    assert v.cache_usage.entries == 1


def test_over_long_token_is_malformed_even_when_signed(key: Ed25519PrivateKey) -> None:
    v = verifier(key)
    long = signed(key, pad="x" * 3450)
    assert 4900 < len(long) < 5100
    assert reason(v, long) == "malformed"
    assert reason(v, "a" * 5000) == "malformed"
    assert v.cache_usage.entries == 0
    within = signed(key, pad="x" * 2600)
    assert len(within) <= 4096 and v.verify(within).subject == "alice"


def test_token_length_bound_is_a_setting(key: Ed25519PrivateKey) -> None:
    token, _ = mint(key, "alice", now=NOW)
    assert reason(verifier(key, max_token_bytes=len(token) - 1), token) == "malformed"
    assert verifier(key, max_token_bytes=len(token)).verify(token).subject == "alice"


# -- 2. the cache: bounded in bytes and entries, least recently used goes --------------


def test_flood_of_valid_tokens_stays_within_bytes_and_spares_the_active_user(
    key: Ed25519PrivateKey,
) -> None:
    bound = 32 * 1024
    v = verifier(key, cache_bytes=bound)
    legit, _ = mint(key, "alice", now=NOW)
    principal = v.verify(legit)
    for i in range(400):
        # A holder of one API key can mint as many distinct good tokens as it likes.
        v.verify(mint(key, f"flood{i}", now=NOW)[0])
        assert v.cache_usage.size_bytes <= bound
        if i % 20 == 0:
            assert v.verify(legit) is principal  # still cached: used recently
    usage = v.cache_usage
    assert usage.evictions > 300 and 20 < usage.entries < 100
    assert v.verify(legit) is principal


def test_entry_bound_also_evicts_least_recently_used(key: Ed25519PrivateKey) -> None:
    v = verifier(key, cache_size=10)
    legit, _ = mint(key, "alice", now=NOW)
    principal = v.verify(legit)
    for i in range(50):
        v.verify(mint(key, f"flood{i}", now=NOW)[0])
        assert v.cache_usage.entries <= 10
        assert v.verify(legit) is principal


def test_entry_cost_does_not_grow_with_the_token(key: Ed25519PrivateKey) -> None:
    """Keyed by the token's SHA-256: a long token costs what a short one does."""
    short, long = verifier(key), verifier(key)
    short.verify(signed(key))
    long.verify(signed(key, pad="x" * 2600))
    assert short.cache_usage.size_bytes == long.cache_usage.size_bytes < 1024


def test_each_token_one_entry(key: Ed25519PrivateKey) -> None:
    v = verifier(key)
    first, second = mint(key, "alice", now=NOW)[0], mint(key, "alice", now=NOW)[0]
    v.verify(first)
    v.verify(first)
    v.verify(second)
    assert v.cache_usage.entries == 2


def test_no_cache_at_zero_bytes(key: Ed25519PrivateKey) -> None:
    v = verifier(key, cache_bytes=0)
    token, _ = mint(key, "alice", now=NOW)
    assert v.verify(token).subject == "alice" and v.verify(token).subject == "alice"
    assert v.cache_usage.entries == 0 and v.cache_usage.size_bytes == 0


def test_expired_and_dropped_entries_give_their_bytes_back(key: Ed25519PrivateKey) -> None:
    clock = [NOW]
    v = TokenVerifier([key.public_key()], clock=lambda: clock[0])
    v.verify(mint(key, "alice", now=NOW, lifetime=60)[0])
    token, _ = mint(key, "bob", now=NOW)
    v.verify(token)
    clock[0] = NOW + 100
    assert reason(v, mint(key, "alice", now=NOW, lifetime=60)[0]) == "expired"
    v.verify(token)
    v.set_keys([])
    assert v.cache_usage.entries == 0 and v.cache_usage.size_bytes == 0


# -- 3. claims: finite integers in range, bounded strings ------------------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), 1e308, NOW + 60, True, 10**400, -1, "1800000060"],
    ids=["nan", "inf", "-inf", "1e308", "float", "bool", "10**400", "negative", "string"],
)
def test_times_must_be_integers_in_range(key: Ed25519PrivateKey, claim: str, value: object) -> None:
    assert reason(verifier(key), signed(key, **{claim: value})) == "claims"


def test_json_nan_literal_is_refused(key: Ed25519PrivateKey) -> None:
    # PyJWT reads the payload with json.loads, which takes NaN and Infinity literals.
    assert "NaN" in json.dumps(float("nan"))
    assert reason(verifier(key), signed(key, exp=float("nan"))) == "claims"


def test_expiry_before_issue_is_refused(key: Ed25519PrivateKey) -> None:
    assert reason(verifier(key), signed(key, exp=int(NOW) - 1)) == "claims"


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"sub": ""}, False),
        ({"sub": "a" * 257}, False),
        ({"sub": 7}, False),
        ({"sub": "a" * 256}, True),
        ({"jti": ""}, False),
        ({"jti": "j" * 129}, False),
        ({"jti": ["j"]}, False),
        ({"jti": "j" * 128}, True),
    ],
)
def test_subject_and_token_id_bounds(
    key: Ed25519PrivateKey, claims: dict[str, object], ok: bool
) -> None:
    token = signed(key, **claims)
    if ok:
        assert verifier(key).verify(token).subject
    else:
        assert reason(verifier(key), token) == "claims"


# -- 4. scopes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        "root",
        "completions root",
        "",
        " ",
        "completions completions",
        "chat completions chat",
        "completions  chat",
        " completions",
        "completions ",
        "completions\tchat",
        "COMPLETIONS",
        ["completions"],
        7,
    ],
)
def test_scope_nonsense_empty_and_duplicates_refused(key: Ed25519PrivateKey, scope: object) -> None:
    assert reason(verifier(key), signed(key, scope=scope)) == "scope"


def test_null_scope_is_a_missing_claim(key: Ed25519PrivateKey) -> None:
    assert reason(verifier(key), signed(key, scope=None)) == "claims"


@pytest.mark.parametrize(
    ("scope", "scopes"),
    [
        ("completions", {"completions"}),
        ("chat completions", {"chat", "completions"}),
        ("admin", {"admin"}),
        ("admin chat completions", {"admin", "chat", "completions"}),
    ],
)
def test_known_scopes_become_a_set(key: Ed25519PrivateKey, scope: str, scopes: set[str]) -> None:
    assert verifier(key).verify(signed(key, scope=scope)).scopes == scopes


def test_mint_default_scope_verifies_with_both(key: Ed25519PrivateKey) -> None:
    principal = verifier(key).verify(mint(key, "alice", now=NOW)[0])
    assert principal.scopes == {"completions", "chat"} == set(DEFAULT_SCOPE.split())
    assert allows(principal.scopes, "completions") and allows(principal.scopes, "chat")
    assert not allows(principal.scopes, "admin")


def test_mint_refuses_a_scope_no_verifier_would_take(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="scope"):
        mint(key, "alice", scope="completions root")


def test_allows_admin_implies_nothing_else() -> None:
    assert KNOWN_SCOPES == {"completions", "chat", "admin"}
    assert not allows(frozenset({"admin"}), "chat")
    assert not allows(frozenset({"admin"}), "completions")
    assert allows(frozenset({"admin"}), "admin")
    assert not allows(frozenset({"completions"}), "chat")
    with pytest.raises(ValueError):
        allows(frozenset({"chat"}), "chats")  # a route's typo is a bug, not a 403


def test_require_scope_is_a_403_in_both_dialects(key: Ed25519PrivateKey) -> None:
    principal = verifier(key).verify(signed(key, scope="completions"))
    require_scope(principal, "completions")
    with pytest.raises(Forbidden) as info:
        require_scope(principal, "chat")
    exc = info.value
    assert isinstance(exc, ClientError) and not isinstance(exc, Unauthorized)
    status, headers, body = render_error(exc, Dialect.OPENAI)
    assert status == 403 and b"www-authenticate" not in dict(headers)
    error = json.loads(body)["error"]
    assert error["type"] == "permission_error" and error["code"] == "insufficient_scope"
    assert "chat" in error["message"]
    assert json.loads(render_error(exc, Dialect.OLLAMA)[2]) == {"error": error["message"]}


# -- settings, services, metrics ---------------------------------------------------------


def test_settings_reach_the_verifier() -> None:
    assert AuthSettings().max_token_bytes == 4096
    assert AuthSettings().cache_bytes == 16 * 1024 * 1024
    auth = AuthSettings(max_token_bytes=1000, cache_bytes=5000, cache_size=7)
    verifier = Services.build(GatewaySettings(auth=auth)).verifier
    assert verifier.max_token_bytes == 1000
    assert (verifier.cache_bytes, verifier.cache_size) == (5000, 7)


def test_cache_gauges(key: Ed25519PrivateKey) -> None:
    v = verifier(key, cache_size=1)
    v.verify(mint(key, "alice", now=NOW)[0])
    v.verify(mint(key, "bob", now=NOW)[0])
    metrics = Metrics("local")
    metrics.watch_tokens(v)
    text = metrics.exposition().decode()
    size = v.cache_usage.size_bytes
    assert "ghostgate_token_cache_entries 1.0" in text
    assert f"ghostgate_token_cache_bytes {float(size)}" in text
    assert "ghostgate_token_cache_evictions_total 1.0" in text


def test_token_command_mints_the_default_scope() -> None:
    from run import build_parser

    assert build_parser().parse_args(["token", "bob"]).scope == DEFAULT_SCOPE
