"""Prometheus metrics of the router, with the names docs/ARCHITECTURE.md lists.

Each app gets its own registry, so tests can run several in one process.
`ghostgate_region_up` mirrors the prober's state and is read at scrape time.
The request metrics share their names with the regions'; `region` says where a
forwarded request was served (`router` for the router's own endpoints).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.metrics import RequestMetrics
from router.prober import RegionProber


class RouterMetrics(RequestMetrics):
    """Every metric one router process exports."""

    def __init__(self) -> None:
        super().__init__(
            "Requests through the router, by serving region, route and status.",
            "Time spent in the router itself: before the forward is sent (WAN delay "
            "excluded) and from the region's first byte to the client's.",
        )
        r = self.registry
        self.route_decisions = Counter(
            "ghostgate_route_decisions",
            "Requests (forwards, token answers) sent to each region by region choice.",
            ["region"],
            registry=r,
        )
        self.failovers = Counter(
            "ghostgate_forward_failovers",
            "Forwards moved past a region that could not take them, by that region.",
            ["region"],
            registry=r,
        )
        self.cancellations = Counter(
            "ghostgate_cancellations",
            "Forwards cancelled, by why and at which stage.",
            ["reason", "stage"],
            registry=r,
        )
        self.auth_failures = Counter(
            "ghostgate_auth_failures",
            "Rejected API keys and tokens, by reason.",
            ["reason"],
            registry=r,
        )
        self.tokens_issued = Counter(
            "ghostgate_tokens_issued", "Tokens minted from API keys.", registry=r
        )
        self.key_lookup_failures = Counter(
            "ghostgate_key_lookup_failures",
            "Failed API key lookups, by outcome: limited (429, the store not asked), "
            "negative_cached (refused from memory), looked_up (the store found none).",
            ["outcome"],
            registry=r,
        )

    def failed_lookup(self, outcome: str) -> None:
        """Count one failed API key lookup (`TokenIssuer`'s `on_failed_lookup`)."""
        self.key_lookup_failures.labels(outcome).inc()

    def watch(self, prober: RegionProber) -> None:
        """Export the prober's view of the regions at scrape time."""
        self.registry.register(_RegionCollector(prober))


class _RegionCollector(Collector):
    def __init__(self, prober: RegionProber) -> None:
        self._prober = prober

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ghostgate_region_up", "1 if the region takes traffic.", labels=["region"]
        )
        load = GaugeMetricFamily(
            "ghostgate_region_inflight", "Generations running in the region.", labels=["region"]
        )
        for name, view in self._prober.views.items():
            up.add_metric([name], 1.0 if view.health.up else 0.0)
            load.add_metric([name], view.inflight)
        yield up
        yield load
