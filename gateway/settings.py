"""The gateway's configuration: one frozen, typed object, built once and passed in.

Values are grouped the way httpx groups `Timeout` and `Limits`, so each
component receives only the part it needs. Loading from flags, environment and
TOML happens in `gateway.config`; nothing else reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the gateway waits on a backend, in seconds."""

    connect: float = 3.0
    # Until the first response byte, and then between two chunks. Ollama sends
    # its headers with the first token, so this covers a model load and a long
    # prefill on a busy GPU: generous.
    read: float = 120.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one region process healthy under abuse or overload."""

    max_body_bytes: int = 1 * MiB
    # A request body must arrive within this (408 otherwise): a half-sent body
    # would hold its socket and task for as long as the client likes.
    body_timeout: float = 30.0
    # A response a client stops reading is ended after this long blocked in one
    # send, and its backend slot freed (what Hypercorn buffers is bounded: a few
    # frames per HTTP/2 stream, the socket's buffer for HTTP/1.1).
    send_timeout: float = 30.0
    queue_size: int = 256
    # How long a request may wait for a free slot before a 503. Completions are
    # latency-bound (a late completion is a useless one); chat can wait longer.
    queue_wait_completion: float = 2.0
    queue_wait_chat: float = 30.0
    # Attempts on distinct backends before the first byte reaches the client.
    max_attempts: int = 3
    # Per user (token subject), across every instance sharing the store; 0 = off.
    user_requests_per_minute: int = 600
    user_streams: int = 16
    # Fairness of the wait queue between users (gateway/pool/scheduler.py).
    # Requests one user may have waiting; past it a 429, since it is their
    # burst and not the region's capacity. 0 = off.
    queue_per_user: int = 8
    # While another user waits, a user holding this share of the region's
    # healthy slots gets no new one; alone, they may use them all. 1.0 = off.
    user_slot_share: float = 0.5
    # Input bounds of generation bodies (gateway/dialects/*/request.py): 422 past
    # them, 400 for nesting. Stop sequences are matched against every token the
    # gateway relays, so their number and length bound its per-token cost;
    # `max_choices` is `n`, each choice a backend slot and a user stream.
    max_stop_sequences: int = 32
    max_stop_length: int = 256  # characters
    max_choices: int = 4
    # Model names reach the metrics' label check, the access log and the
    # backends' `/api/show`: no legitimate name is longer.
    max_model_name_bytes: int = 256
    # Checked before parsing: Python's JSON parser recurses per level.
    max_json_depth: int = 32


DEFAULT_SLOTS = 4


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One Ollama server the region may send work to."""

    url: str
    slots: int = DEFAULT_SLOTS


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Active health probing of backends."""

    interval: float = 1.0
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Token verification. Regions hold public keys only."""

    public_key_files: tuple[Path, ...] = ()
    # The router's JWKS (gateway/auth/jwks.py): fetched at start, every
    # `jwks_refresh` seconds, and when a token names an unknown key.
    jwks_url: str = ""
    jwks_refresh: float = 60.0
    issuer: str = "ghostgate"
    audience: str = "ghostgate"
    max_lifetime: float = 30 * 60.0
    leeway: float = 30.0
    # A longer bearer token is refused before any parsing (ours are ~400 bytes).
    max_token_bytes: int = 4096
    # Verified tokens, least recently used evicted first past either bound;
    # bytes count each entry's key and principal (about 500 bytes).
    cache_size: int = 100_000
    cache_bytes: int = 16 * MiB


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How Hypercorn listens and treats long-lived editor connections."""

    host: str = "127.0.0.1"
    port: int = 8000
    # With a port here (0 = none), /healthz, /readyz in full and /metrics are
    # served there, in plain HTTP, and the public port keeps only a minimal
    # /readyz (no /metrics): what a probe of a public address may learn.
    operations_port: int = 0
    operations_host: str = "127.0.0.1"
    certfile: Path | None = None
    keyfile: Path | None = None
    # Editor connections live for hours: Hypercorn's defaults (5 s idle, 1000
    # requests) would close or GOAWAY them under the developer's feet.
    keep_alive_timeout: float = 4 * 3600.0
    keep_alive_max_requests: int = 2**31 - 1
    h2_max_concurrent_streams: int = 256
    # A connection must send a complete request head this soon after it opens
    # (or, on HTTP/1.1, after the first byte of its next request); idle
    # connections that have served requests may stay for keep_alive_timeout.
    head_timeout: float = 10.0
    # Connections this process holds at most; when full, the longest-idle one
    # is closed for a new one (a new one is refused when none is idle).
    max_connections: int = 10_000
    # A request head's size (HTTP/1.1 head, HTTP/2 header list) and header count.
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    # HTTP/2 frames that cost a client nothing, per connection (gateway/server/
    # h2_budget.py): a burst, then a rate per second; past it, GOAWAY.
    h2_reset_burst: int = 1000  # streams reset before their response started
    h2_reset_rate: float = 500.0
    h2_control_burst: int = 100  # SETTINGS and PING
    h2_control_rate: float = 10.0
    h2_empty_burst: int = 1000  # empty DATA, PRIORITY
    h2_empty_rate: float = 100.0
    h2_refused_burst: int = 100  # streams opened past the running-stream limit
    h2_refused_rate: float = 10.0
    graceful_timeout: float = 10.0
    use_uvloop: bool = True


@dataclass(frozen=True, slots=True)
class FimOverride:
    """A model's fill-in-the-middle format: a known family, or a template of its own."""

    family: str | None = None
    template: str | None = None  # with {prefix} and {suffix}
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """The region's model table: names clients send, and defaults per task."""

    # Client-facing name -> served model, e.g. Copilot engine names.
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Default models for clients that cannot choose (None: picked from what is served).
    completion: str | None = None
    chat: str | None = None
    # The context window FIM prompts are trimmed to, in tokens.
    context_tokens: int = 4096
    fim: Mapping[str, FimOverride] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class WasteSettings:
    """Superseding, the completion cache and typing-through (no GPU time on repeats)."""

    supersede: bool = True
    # (token subject, User-Agent) groups completion requests without a header.
    implicit_groups: bool = True
    cache: bool = True
    cache_ttl: float = 600.0
    # The completion cache this process holds (the embedded store's, or Redis'
    # local fallback's): least recently used out past this many bytes.
    cache_bytes: int = 64 * MiB
    typing_through: bool = True
    # Typing-through memory, in bytes as well as in groups and entries per group
    # (gateway/completion/cache.py): least recently used group out first.
    typing_bytes: int = 8 * MiB
    # Expired typing-through and cache entries are removed this often, read or
    # not (else they would stay until pushed out). 0 = only on read.
    sweep_interval: float = 10.0
    # Tokens a request with no limit is expected to generate, for `saved` accounting.
    expected_tokens: int = 64
    # A backend's 200 answer to /api/show (per model) and /api/version is
    # reused this long: editors ask on every start and file switch. 0 = off.
    backend_answer_ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How the store rides out a Redis outage (gateway/store/outage.py); the router's too."""

    # A key or revocation write Redis refuses is tried again this many times,
    # after `write_backoff` s doubling (0.2 + 0.4 + 0.8 s), before it is queued.
    write_retries: int = 3
    write_backoff: float = 0.2
    # Writes queued while Redis is away, replayed in order when it is back;
    # past this many a write stays in the local SQLite copy only (logged, counted).
    replay_limit: int = 10_000


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything a region process needs, built once at start-up."""

    region: str = "local"
    backends: tuple[BackendSpec, ...] = ()
    simulated: bool = False
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    health: HealthSettings = field(default_factory=HealthSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    waste: WasteSettings = field(default_factory=WasteSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    # The embedded store's SQLite lives here (shared with the router on one
    # machine); None: a private temporary directory.
    state_dir: Path | None = None
    redis_url: str | None = None
    log_level: str = "info"
