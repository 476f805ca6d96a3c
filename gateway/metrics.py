"""Prometheus metrics of a region process, with the names docs/ARCHITECTURE.md lists.

Each app gets its own registry, so tests can run several in one process.
Gauges that mirror live state (in-flight per backend, queue depth) are read
at scrape time by a collector instead of being updated on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.pool import Scheduler
from gateway.trace import Trace

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


@dataclass(slots=True)
class WasteTally:
    """Work a region spared its backends, as plain numbers for /readyz (the router sums them)."""

    cancelled: dict[str, int] = field(default_factory=dict)
    saved_tokens: int = 0
    from_memory: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "cancelled": dict(self.cancelled),
            "saved_tokens": self.saved_tokens,
            "from_memory": self.from_memory,
        }


class RequestMetrics:
    """The per-request metrics of every Ghostgate process, region and router alike:
    the same names at both, so a dashboard sums them; `region` says where the
    request was served."""

    def __init__(self, requests_help: str, overhead_help: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ghostgate_requests", requests_help, ["region", "route", "model", "status"], registry=r
        )
        self.duration = Histogram(
            "ghostgate_request_duration_seconds",
            "Time from request to last byte.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "ghostgate_time_to_first_token_seconds",
            "Time from request to first body byte.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "ghostgate_overhead_seconds", overhead_help, buckets=OVERHEAD_BUCKETS, registry=r
        )

    def observe_request(self, trace: Trace, served_by: str, model: str, now: float) -> None:
        """Count a finished request (499: the client left before any status)."""
        self.requests.labels(served_by, trace.route, model, str(trace.status or 499)).inc()
        self.duration.labels(trace.route).observe(now - trace.started)
        if trace.client_first_byte:
            self.ttft.labels(trace.route).observe(trace.client_first_byte - trace.started)
        overhead = trace.overhead()
        if overhead is not None:
            self.overhead.observe(overhead)

    def watch_connections(self, stats: ConnectionStats) -> None:
        """Export the process's connections (gateway/server/connections.py) at scrape time."""
        self.registry.register(_ConnectionCollector(stats))

    def watch_tokens(self, verifier: TokenCacheStats) -> None:
        """Export the token verifier's cache (gateway/auth/tokens.py) at scrape time."""
        self.registry.register(_TokenCacheCollector(verifier))

    def watch_store(self, store: StoreStats) -> None:
        """Export the store's outage figures (gateway/store/outage.py) at scrape time."""
        self.registry.register(_StoreCollector(store))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StoreStats(Protocol):
    """A `gateway.store.Store`, as far as its metrics go: its `status()` figures."""

    def status(self) -> dict[str, object]: ...


def _figure(status: Mapping[str, object], name: str) -> float:
    value = status.get(name)
    return float(value) if isinstance(value, int | float) else 0.0


class _StoreCollector(Collector):
    def __init__(self, store: StoreStats) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        status = self._store.status()
        degraded = GaugeMetricFamily(
            "ghostgate_store_degraded", "1 while Redis is away and local state answers."
        )
        degraded.add_metric([], 1.0 if status.get("degraded") else 0.0)
        queued = GaugeMetricFamily(
            "ghostgate_store_replay_queue",
            "Key and revocation writes waiting for Redis, replayed when it is back "
            "(store.replay_limit at most).",
        )
        queued.add_metric([], _figure(status, "pending_writes"))
        retries = CounterMetricFamily(
            "ghostgate_store_write_retries",
            "Key and revocation writes tried again after Redis refused them "
            "(store.write_retries per write).",
        )
        retries.add_metric([], _figure(status, "write_retries"))
        failures = CounterMetricFamily(
            "ghostgate_store_write_failures",
            "Key and revocation writes that never reached Redis (they stay in the local "
            "copy), by reason: rejected (Redis answered with an error), queue_full "
            "(past store.replay_limit), abandoned (still queued when the process stopped).",
            labels=["reason"],
        )
        counts = status.get("write_failures")
        for reason, count in sorted(counts.items() if isinstance(counts, dict) else []):
            failures.add_metric([str(reason)], float(count))
        yield from (degraded, queued, retries, failures)


class ConnectionStats(Protocol):
    @property
    def live(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def closed(self) -> dict[str, int]: ...


class _ConnectionCollector(Collector):
    def __init__(self, stats: ConnectionStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("ghostgate_connections", "Client connections held now.")
        live.add_metric([], self._stats.live)
        limit = GaugeMetricFamily(
            "ghostgate_connections_limit", "Client connections this process holds at most."
        )
        limit.add_metric([], self._stats.limit)
        closed = CounterMetricFamily(
            "ghostgate_connections_closed",
            "Connections closed by a bound: head_timeout, shed (longest idle, at the "
            "bound), refused (at the bound, none idle), h2_abuse.",
            labels=["reason"],
        )
        for reason, count in sorted(self._stats.closed.items()):
            closed.add_metric([reason], count)
        yield from (live, limit, closed)


class TokenCacheUsage(Protocol):
    @property
    def entries(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def evictions(self) -> int: ...


class TokenCacheStats(Protocol):
    @property
    def cache_usage(self) -> TokenCacheUsage: ...


class _TokenCacheCollector(Collector):
    def __init__(self, verifier: TokenCacheStats) -> None:
        self._verifier = verifier

    def collect(self) -> Iterator[Metric]:
        usage = self._verifier.cache_usage
        entries = GaugeMetricFamily(
            "ghostgate_token_cache_entries", "Verified tokens cached (auth.cache_size at most)."
        )
        entries.add_metric([], usage.entries)
        size = GaugeMetricFamily(
            "ghostgate_token_cache_bytes",
            "Memory the verified-token cache holds: keys and principals (auth.cache_bytes).",
        )
        size.add_metric([], usage.size_bytes)
        evictions = CounterMetricFamily(
            "ghostgate_token_cache_evictions",
            "Verified tokens evicted, least recently used first, by either cache bound.",
        )
        evictions.add_metric([], usage.evictions)
        yield from (entries, size, evictions)


class Metrics(RequestMetrics):
    """Every metric one region process exports."""

    def __init__(self, region: str) -> None:
        super().__init__(
            "Requests served, by route, model and status.",
            "Time spent in the gateway itself: before the upstream send (queueing excluded) "
            "and from the upstream's first byte to the client's.",
        )
        self.region = region
        self.waste = WasteTally()
        r = self.registry
        self.cancellations = Counter(
            "ghostgate_cancellations",
            "Requests cancelled, by why and at which stage.",
            ["reason", "stage"],
            registry=r,
        )
        self.tokens = Counter(
            "ghostgate_tokens",
            "Tokens by kind: prompt, generated, saved (by a cancel).",
            ["kind"],
            registry=r,
        )
        self.connections_opened = Counter(
            "ghostgate_upstream_connections_opened",
            "New TCP connections to backends.",
            registry=r,
        )
        self.auth_failures = Counter(
            "ghostgate_auth_failures",
            "Rejected tokens, by reason.",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "ghostgate_cache_hits",
            "Completions answered without a backend: exact cache or typing-through.",
            ["kind"],
            registry=r,
        )
        self.backend_answer_hits = Counter(
            "ghostgate_backend_answer_cache_hits",
            "Answers to /api/show and /api/version reused without asking a backend, by route.",
            ["route"],
            registry=r,
        )
        self.stream_errors = Counter(
            "ghostgate_stream_errors",
            "Streams ended with an error after the response began.",
            ["route"],
            registry=r,
        )
        self.input_refusals = Counter(
            "ghostgate_input_refusals",
            "Generation bodies refused by an input bound, by bound: json_depth, "
            "json_constant (400); number, stop_sequences, stop_length, choices, "
            "model_name (422).",
            ["bound"],
            registry=r,
        )
        self.user_limit_refusals = Counter(
            "ghostgate_user_limit_refusals",
            "Generations refused with 429 by a per-user limit: requests_per_minute, "
            "streams (a request with n choices needs n).",
            ["limit"],
            registry=r,
        )

    def watch(self, scheduler: Scheduler) -> None:
        """Export the scheduler's live state at scrape time."""
        self.registry.register(_SchedulerCollector(scheduler))

    def watch_memory(self, memory: CompletionMemoryStats) -> None:
        """Export typing-through memory and the in-process completion cache
        (gateway/completion/cache.py) at scrape time."""
        self.registry.register(_MemoryCollector(memory))


class _SchedulerCollector(Collector):
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        inflight = GaugeMetricFamily(
            "ghostgate_backend_inflight", "Requests running on each backend.", labels=["backend"]
        )
        up = GaugeMetricFamily(
            "ghostgate_backend_up", "1 if the backend passes its health probe.", labels=["backend"]
        )
        for backend in self._scheduler.backends:
            inflight.add_metric([backend.url], backend.inflight)
            up.add_metric([backend.url], 1.0 if backend.healthy else 0.0)
        queue = GaugeMetricFamily("ghostgate_queue_depth", "Requests waiting for a slot.")
        queue.add_metric([], self._scheduler.queued)
        yield inflight
        yield up
        yield queue
        yield from _fairness(self._scheduler)


def _fairness(scheduler: Scheduler) -> Iterator[Metric]:
    """The fair queue's bounds at work (gateway/pool/scheduler.py), counted by the scheduler."""
    users = GaugeMetricFamily(
        "ghostgate_queue_users_waiting", "Distinct users with a request waiting for a slot."
    )
    users.add_metric([], scheduler.users_waiting)
    held = CounterMetricFamily(
        "ghostgate_queue_share_held_back",
        "Queued requests passed over for another user's because their user held "
        "user_slot_share of the region's slots.",
    )
    held.add_metric([], scheduler.share_held_back)
    refused = CounterMetricFamily(
        "ghostgate_queue_user_refusals",
        "Requests refused with 429 because their user already had queue_per_user waiting.",
    )
    refused.add_metric([], scheduler.user_queue_refusals)
    yield from (users, held, refused)


class MemoryFigures(TokenCacheUsage, Protocol):
    """A bounded memory's figures: a token cache's, and what its sweep expired."""

    @property
    def expired(self) -> int: ...


class CompletionMemoryStats(Protocol):
    @property
    def typing_usage(self) -> MemoryFigures: ...

    @property
    def cache_usage(self) -> MemoryFigures | None: ...


class _MemoryCollector(Collector):
    """Typing-through memory and the completion cache held in this process (with
    Redis, its local fallback): sizes now, and what their bounds and sweep removed."""

    def __init__(self, memory: CompletionMemoryStats) -> None:
        self._memory = memory

    def collect(self) -> Iterator[Metric]:
        typing, cache = self._memory.typing_usage, self._memory.cache_usage
        evictions = CounterMetricFamily(
            "ghostgate_memory_evictions",
            "Entries pushed out by a bound, least recently used first: kind typing "
            "(waste.typing_bytes, or the group bound) or cache (waste.cache_bytes).",
            labels=["kind"],
        )
        expired = CounterMetricFamily(
            "ghostgate_memory_expired",
            "Entries past their TTL removed by the sweep (waste.sweep_interval), by kind.",
            labels=["kind"],
        )
        gauges = {
            "typing": ("ghostgate_typing_memory", "typing-through memory (waste.typing_bytes)"),
            "cache": ("ghostgate_completion_cache", "completion cache (waste.cache_bytes)"),
        }
        for kind, usage in (("typing", typing), ("cache", cache)):
            if usage is None:
                continue
            name, what = gauges[kind]
            entries = GaugeMetricFamily(f"{name}_entries", f"Entries in this process's {what}.")
            entries.add_metric([], usage.entries)
            size = GaugeMetricFamily(f"{name}_bytes", f"Bytes held by this process's {what}.")
            size.add_metric([], usage.size_bytes)
            yield from (entries, size)
            evictions.add_metric([kind], usage.evictions)
            expired.add_metric([kind], usage.expired)
        yield from (evictions, expired)
