"""Prometheus metrics of a region process, with the names docs/ARCHITECTURE.md lists.

Each app gets its own registry, so tests can run several in one process.
Gauges that mirror live state (in-flight per backend, queue depth) are read
at scrape time by a collector instead of being updated on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
        self.stream_errors = Counter(
            "ghostgate_stream_errors",
            "Streams ended with an error after the response began.",
            ["route"],
            registry=r,
        )

    def watch(self, scheduler: Scheduler) -> None:
        """Export the scheduler's live state at scrape time."""
        self.registry.register(_SchedulerCollector(scheduler))


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
