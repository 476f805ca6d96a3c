"""The parts of the router, built once and handed to the endpoints.

`RouterServices.build` only wires: no file, socket or task. `running` does the
I/O, for the lifetime of the ASGI lifespan, and undoes it after, so each
resource has exactly one owner:

    signing keys    read from the state dir (the first one made there)
    store           API keys (SQLite in the state dir, or Redis)
    revocations     the store's revocation snapshot, refreshed every second and
                    kept in `<state-dir>/revocations.json` for a restart without Redis
    prober          /readyz of every region, every second
    clients         one HTTP/2 client per region (forward mode)
    key watch       reloads the signing keys when they change on disk
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs

from gateway.asgi import Scope, header
from gateway.auth import TokenVerifier, bearer_token
from gateway.errors import BadRequest
from gateway.lifecycle import in_background
from gateway.operations import ANYONE, Asker
from gateway.store import RevocationCache, Store, open_store, revocations_file
from router.grants import TokenIssuer, is_api_key
from router.keyring import KeyRing
from router.locations import CidrTable, Location, LocationError, resolve_location
from router.metrics import RouterMetrics
from router.nearest import RouteDecision, choose_region
from router.prober import RegionProber
from router.settings import RouterSettings
from router.upstreams import RegionClients

log = logging.getLogger("ghostgate.router")

KEY_WATCH_INTERVAL = 1.0


def peer_address(scope: Scope) -> str | None:
    """The client's address for limits: the socket peer, the one address a client
    cannot choose. X-Forwarded-For is not trusted: anyone can send one, and
    believing it would give an attacker a fresh address, so a fresh budget of
    failed key lookups, per request."""
    client = scope.get("client")
    return str(client[0]) if client else None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a forwarded request speaks for, and the token the region will check."""

    subject: str
    token: str


@dataclass(slots=True)
class RouterServices:
    """Everything a router endpoint may use; one per router process."""

    settings: RouterSettings
    metrics: RouterMetrics
    keyring: KeyRing
    prober: RegionProber
    clients: RegionClients
    cidr: CidrTable
    store: Store
    revocations: RevocationCache
    issuer: TokenIssuer
    verifier: TokenVerifier
    draining: bool = False

    @classmethod
    def build(cls, settings: RouterSettings) -> RouterServices:
        metrics = RouterMetrics()
        tokens = settings.tokens
        keyring = KeyRing(settings.state_dir, rotation_grace=tokens.rotation_grace)
        prober = RegionProber(settings.regions, settings.probes)
        metrics.watch(prober)
        clients = RegionClients(settings.regions, settings.forward.connect_timeout)
        cidr = CidrTable.parse(settings.cidr, settings.regions)
        store = open_store(settings.state_dir, settings.redis_url, settings.store)
        metrics.watch_store(store)
        revocations = RevocationCache(store, path=revocations_file(settings.state_dir))
        issuer = TokenIssuer(
            store, keyring, revocations, tokens, on_failed_lookup=metrics.failed_lookup
        )
        verifier = TokenVerifier(
            (),  # the keyring's, once `running` has loaded them
            issuer=tokens.issuer,
            audience=tokens.audience,
            revocations=revocations,
        )
        keyring.on_change(verifier.set_keys)
        metrics.watch_tokens(verifier)
        return cls(
            settings, metrics, keyring, prober, clients, cidr, store, revocations, issuer, verifier
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RouterServices]:
        """Load the signing keys; open the store, the revocation feed, the probes
        and the region clients."""
        self.keyring.load()
        async with self.store, self.revocations, self.prober, self.clients:
            up = [name for name, view in self.prober.views.items() if view.health.up]
            log.info("router ready", extra={"url": self.settings.url, "regions_up": up})
            async with in_background(self._watch_keys(), "key-watch"):
                yield self

    async def _watch_keys(self) -> None:
        while True:
            await asyncio.sleep(KEY_WATCH_INTERVAL)
            # A stat and a tiny read: cheap enough for the event loop.
            self.keyring.reload()

    def locate(self, scope: Scope) -> Location:
        """The caller's location: `?location=`, `X-Client-Location`, CIDR table, default."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        client = scope.get("client")
        try:
            return resolve_location(
                query.get("location", [None])[0],
                header(scope, b"x-client-location"),
                client[0] if client else None,
                self.cidr,
                self.settings.default,
                self.settings.regions,
            )
        except LocationError as exc:
            raise BadRequest(str(exc)) from None

    def decide(self, location: Location) -> RouteDecision:
        """Region choice over what the probes know right now."""
        return choose_region(location, self.prober.states(), self.settings.policy)

    async def authorize(self, authorization: str | None, address: str | None) -> Caller:
        """An API key (`gg_...`, minted into a cached token) or a router-signed JWT;
        `address` (`peer_address`) spends its budget of failed key lookups."""
        credential = bearer_token(authorization)
        if is_api_key(credential):
            grant = await self.issuer.grant(credential, address)
            return Caller(grant.user, grant.token)
        principal = self.verifier.verify(credential)
        return Caller(principal.subject, credential)

    def readiness(self, asker: Asker = ANYONE) -> tuple[bool, dict[str, object]]:
        """Ready when not draining and some region takes traffic. Anyone learns that
        and which regions are up (their names are public: /v1/status and every
        token answer give them; `ghostgate up` waits on them); an operator
        (gateway/operations.py) also the region count, the store and the signing kid."""
        up = [name for name, view in self.prober.views.items() if view.health.up]
        ready = bool(up) and not self.draining
        report: dict[str, object] = {"ready": ready, "draining": self.draining, "regions_up": up}
        failures = self.metrics.auth_failures
        if not asker.told_all(self.verifier, lambda reason: failures.labels(reason).inc()):
            return ready, report
        report.update(
            {
                "role": "router",
                "regions": len(self.prober.views),
                "store": self.store.status(),
                "signing_kid": self.keyring.signer_kid,
            }
        )
        return ready, report
