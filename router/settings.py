"""The router's configuration: one frozen, typed object, built once and passed in.

Loading it from flags and an optional TOML file happens in `router.config`;
nothing else in the router reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.settings import StoreSettings
from router.nearest import RoutePolicy
from router.regions import DEFAULT_REGIONS, Region

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How the router watches the regions' `/readyz`."""

    interval: float = 1.0
    # Below the interval, so a hung region costs one probe, not a pile of them.
    timeout: float = 0.8


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """Forward mode: the router relaying API calls to a region over HTTP/2."""

    max_body_bytes: int = 1 * MiB
    body_timeout: float = 30.0  # the client's body must arrive within this (408)
    # The client must read what is relayed: one send blocked this long ends the stream.
    send_timeout: float = 30.0
    # A dead region refuses at once; a black-holed one must not hold a
    # developer for long before the next region gets the request.
    connect_timeout: float = 2.0
    # Until the region's first body byte, and then between two chunks. The
    # region itself bounds queueing (2 s completions, 30 s chat) and backend
    # reads (120 s); this only catches a region that stopped answering.
    read_timeout: float = 180.0
    # Add the estimated client-region RTT before each forward (local runs).
    wan_latency: bool = False


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """The JWTs the router mints from API keys."""

    lifetime: float = 600.0
    issuer: str = "ghostgate"
    audience: str = "ghostgate"
    # A key rotated into `<state-dir>/keys` is published in the JWKS at once
    # but signs only after this long, so that every region (refreshing its
    # JWKS each 60 s) knows it before the first token it signs arrives.
    rotation_grace: float = 65.0
    # Forward mode re-reads an API key's record (and so notices a revocation
    # even without the revocation feed) at least this often.
    recheck: float = 60.0
    # Guards on the key store (router/grants.py), so that no client can make
    # it work at line rate. Failed lookups per client address: a burst of
    # this many, then one every 60/N s (0 = off); so many addresses tracked.
    failed_lookups_per_minute: int = 20
    lookup_limiter_addresses: int = 100_000
    # An unknown key is refused from memory this long (0 = off), for at most
    # so many keys; a key created meanwhile works after at most this long.
    negative_cache_seconds: float = 5.0
    negative_cache_entries: int = 10_000
    # A key's `last_used_at` is written at most this often.
    last_used_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """Everything a router process needs, built once at start-up."""

    state_dir: Path = Path(".ghostgate")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how clients reach the router; default http://host:port
    redis_url: str | None = None
    regions: tuple[Region, ...] = DEFAULT_REGIONS
    default_region: str = ""  # default: the first region
    cidr: tuple[tuple[str, str], ...] = ()  # (network, location), e.g. ("10.1.0.0/16", "DE")
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    store: StoreSettings = field(default_factory=StoreSettings)  # Redis outages
    log_level: str = "info"
    use_uvloop: bool = True

    @property
    def url(self) -> str:
        """The router's base URL as clients see it (`endpoints.api` in a token answer)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def default(self) -> Region:
        """The region for clients whose location nothing tells."""
        wanted = self.default_region or self.regions[0].name
        return next(r for r in self.regions if r.name == wanted)
