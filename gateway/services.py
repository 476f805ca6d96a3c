"""The parts of a region process, built once and handed to the endpoints.

`Services.build` only wires: it makes objects, and touches no file, socket or
task. `Services.running` does the I/O, for the lifetime of the ASGI lifespan,
and undoes it after, so each resource has exactly one owner: it reads the
public key files, opens the shared store, the upstream pool and the JWKS
refresher, probes the backends once and starts probing them every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.asgi import Scope, header
from gateway.auth import (
    JwksRefresher,
    JwksVerifier,
    Principal,
    RevocationCheck,
    TokenVerifier,
    load_public_keys,
)
from gateway.completion import (
    GROUP_HEADER,
    CompletionMemory,
    FimFamily,
    Supersessions,
    TemplateCache,
    Ticket,
    fim_overrides,
    group_for,
)
from gateway.lifecycle import every, in_background
from gateway.metrics import Metrics
from gateway.operations import ANYONE, Asker
from gateway.pool import Backend, HealthProber, Relay, Scheduler, Upstream, served_models
from gateway.settings import GatewaySettings
from gateway.shared import SharedState
from gateway.trace import trace_of

log = logging.getLogger("ghostgate.gateway")

PRINCIPAL_KEY = "ghostgate.principal"


@dataclass(slots=True)
class Services:
    """Everything an endpoint may use; one per region process."""

    settings: GatewaySettings
    metrics: Metrics
    scheduler: Scheduler
    upstream: Upstream
    prober: HealthProber
    relay: Relay
    verifier: TokenVerifier
    templates: TemplateCache
    fim_overrides: dict[str, FimFamily]
    shared: SharedState
    memory: CompletionMemory
    draining: bool = False
    jwks: JwksRefresher | None = None
    supersessions: Supersessions = field(default_factory=Supersessions)

    @classmethod
    def build(
        cls, settings: GatewaySettings, revocations: RevocationCheck | None = None
    ) -> Services:
        metrics = Metrics(settings.region)
        backends = [
            Backend(url=spec.url.rstrip("/"), slots=spec.slots) for spec in settings.backends
        ]
        scheduler = Scheduler(backends, queue_size=settings.limits.queue_size)
        metrics.watch(scheduler)
        upstream = Upstream(settings.timeouts, metrics.connections_opened.inc)
        prober = HealthProber(scheduler, upstream, settings.health)
        auth = settings.auth
        supersessions = Supersessions()
        shared = SharedState(
            settings.region, settings.state_dir, settings.redis_url, supersessions, settings.store
        )
        metrics.watch_store(shared.store)
        verifier = (JwksVerifier if auth.jwks_url else TokenVerifier)(
            (),  # the key files are read by `running`
            issuer=auth.issuer,
            audience=auth.audience,
            max_lifetime=auth.max_lifetime,
            leeway=auth.leeway,
            max_token_bytes=auth.max_token_bytes,
            cache_size=auth.cache_size,
            cache_bytes=auth.cache_bytes,
            revocations=revocations or shared.revocations,
        )
        metrics.watch_tokens(verifier)
        relay = Relay(scheduler, upstream, prober, settings.limits)
        templates = TemplateCache(upstream)
        memory = CompletionMemory(shared.store, settings.waste)
        metrics.watch_memory(memory)
        services = cls(
            settings,
            metrics,
            scheduler,
            upstream,
            prober,
            relay,
            verifier,
            templates,
            fim_overrides(settings.models),
            shared,
            memory,
            supersessions=supersessions,
        )
        shared.heartbeat = services.heartbeat
        return services

    async def claim_group(self, scope: Scope, completion_route: bool) -> Ticket | None:
        """Hold the request's group (superseding its previous request), if it has one."""
        waste = self.settings.waste
        principal = scope.get(PRINCIPAL_KEY)
        if not waste.supersede or not isinstance(principal, Principal):
            return None
        group = group_for(
            header(scope, GROUP_HEADER),
            principal.subject,
            header(scope, b"user-agent"),
            completion_route,
            waste.implicit_groups,
        )
        if group is None:
            return None
        trace = trace_of(scope)
        trace.group = group
        ticket = self.supersessions.claim(group, trace.request_id)
        await self.shared.announce(group)
        return ticket

    def served_models(self) -> list[str]:
        """Models some healthy backend serves right now."""
        return served_models(self.scheduler.backends)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Services]:
        """Read the keys, open the store, the upstream pool and the JWKS refresher,
        and start probing and the memory sweep; undo all on exit."""
        auth = self.settings.auth
        keys = load_public_keys(auth.public_key_files)
        self.verifier.set_keys(keys)
        if auth.jwks_url:
            self.jwks = JwksRefresher(
                auth.jwks_url, self.verifier, static_keys=keys, interval=auth.jwks_refresh
            )
        async with self.shared, self.upstream, self.jwks or contextlib.nullcontext():
            await self.prober.probe_all()
            healthy = sum(b.healthy for b in self.scheduler.backends)
            log.info(
                "region ready",
                extra={
                    "region": self.settings.region,
                    "backends": len(self.scheduler.backends),
                    "healthy": healthy,
                },
            )
            async with in_background(self.prober.run(), "health-probes"), self._sweeping():
                yield self

    def _sweeping(self) -> contextlib.AbstractAsyncContextManager[None]:
        # Expired typing-through and cache entries go on a timer, not only on read.
        interval = self.memory.sweep_interval
        if interval <= 0:
            return contextlib.nullcontext()
        return in_background(every(interval, self.memory.sweep), "memory-sweep")

    def heartbeat(self) -> dict[str, object]:
        """The load the router weighs this region by (also what /readyz says)."""
        ready, _ = self.readiness()
        return {"ready": ready, "draining": self.draining, **self.scheduler.snapshot()}

    def readiness(self, asker: Asker = ANYONE) -> tuple[bool, dict[str, object]]:
        """Whether this region should get traffic, and the figures behind it, as far
        as `asker` may learn them (gateway/operations.py): anyone, what the router's
        probes read (router/prober.py: ready, draining, simulated, load, savings);
        an operator, also the backends (URLs, errors, models), the store, groups
        and tasks. The minimal report is listed field by field, so that a field
        added later is an operator's until someone decides otherwise."""
        healthy = [b for b in self.scheduler.backends if b.healthy]
        ready = bool(healthy) and not self.draining
        load = self.scheduler.snapshot()
        report: dict[str, object] = {
            "ready": ready,
            "draining": self.draining,
            "simulated": self.settings.simulated,
            "inflight": load["inflight"],
            "queued": load["queued"],
            "capacity": load["capacity"],
            # Counts only; the router's status page sums them.
            "waste": self.metrics.waste.snapshot(),
        }
        failures = self.metrics.auth_failures
        if not asker.told_all(self.verifier, lambda reason: failures.labels(reason).inc()):
            return ready, report
        report.update(
            {
                "region": self.settings.region,
                # What a leak would show: live groups and the process's tasks.
                "groups_live": len(self.supersessions),
                "store": self.shared.store.status(),
                "store_degraded": self.shared.degraded,
                "tasks": len(asyncio.all_tasks()),
                "backends": {
                    "total": len(self.scheduler.backends),
                    "healthy": len(healthy),
                    "detail": [
                        {
                            "url": b.url,
                            "healthy": b.healthy,
                            "inflight": b.inflight,
                            "slots": b.slots,
                            "models": sorted(b.models),
                            "loaded": sorted(b.loaded),
                            "error": b.last_error,
                        }
                        for b in self.scheduler.backends
                    ],
                },
                **load,
            }
        )
        return ready, report
