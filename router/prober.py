"""The router's view of every region, from its `/readyz`, probed every second.

Each probe's outcome feeds `RegionHealth.observe` (router/health.py: down after
two misses in a row, back after two good probes); the figures of an answer
(in flight, queued, capacity, draining) feed region choice. A forward that
cannot connect ejects the region at once (`eject`), so requests do not spend
two probe intervals learning that a process is gone; the probes bring it back.

`/readyz` answers 503 while a region drains or has no healthy backend: that is
a miss for its health, but the `draining` flag in the body is taken at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import aiohttp

from gateway.lifecycle import SessionLoop, every
from router.health import DOWN_AFTER_MISSES, RegionHealth
from router.nearest import RegionState
from router.regions import Region
from router.settings import ProbeSettings

log = logging.getLogger("ghostgate.router")


@dataclass(slots=True)
class RegionView:
    """What the router last learned about one region."""

    region: Region
    health: RegionHealth
    draining: bool = False
    inflight: int = 0
    queued: int = 0
    capacity: int = 0
    simulated: bool = False
    probe_ms: float | None = None
    last_error: str = ""
    # What the region's savings came to (cancellations, tokens saved, answers from
    # memory), as its /readyz reports them.
    waste: dict[str, object] = field(default_factory=dict)

    def state(self) -> RegionState:
        """The plain-data input of `choose_region`."""
        return RegionState(
            self.region,
            up=self.health.up,
            draining=self.draining,
            inflight=self.inflight,
            queued=self.queued,
            capacity=self.capacity,
        )

    def observe(self, ok: bool, report: object, probe_ms: float | None, error: str) -> None:
        """Take one probe's outcome: health from `ok`, load from the report if any."""
        before = self.health.status
        self.health = self.health.observe(ok)
        self.probe_ms, self.last_error = probe_ms, error
        if isinstance(report, dict):
            self.draining = bool(report.get("draining", False))
            self.simulated = bool(report.get("simulated", False))
            self.inflight = _count(report.get("inflight"))
            self.queued = _count(report.get("queued"))
            self.capacity = _count(report.get("capacity"))
            waste = report.get("waste")
            self.waste = waste if isinstance(waste, dict) else {}
        if self.health.status != before:
            level = logging.INFO if self.health.up else logging.WARNING
            log.log(level, "region %s", self.health.status, extra=self._log_fields())

    def _log_fields(self) -> dict[str, object]:
        return {"region": self.region.name, "error": self.last_error}

    def to_dict(self) -> dict[str, object]:
        """The region as `/v1/status` shows it."""
        return {
            "name": self.region.name,
            "url": self.region.url,
            "area": self.region.area,
            "health": self.health.status,
            "up": self.health.up,
            "draining": self.draining,
            "inflight": self.inflight,
            "queued": self.queued,
            "capacity": self.capacity,
            "simulated": self.simulated,
            "probe_ms": None if self.probe_ms is None else round(self.probe_ms, 2),
            "error": self.last_error,
            "waste": self.waste,
        }


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class RegionProber(SessionLoop):
    """Probes every region's `/readyz`; open it with `async with` (the lifespan does).

    It owns its HTTP session and its probe task and closes both on exit.
    """

    def __init__(self, regions: Iterable[Region], settings: ProbeSettings) -> None:
        super().__init__("region-probes", settings.timeout)
        self.settings = settings
        self.views = {r.name: RegionView(r, RegionHealth()) for r in regions}

    def states(self) -> list[RegionState]:
        return [view.state() for view in self.views.values()]

    def eject(self, name: str, reason: str) -> None:
        """A forward could not reach `name`: down now, back after two good probes."""
        view = self.views[name]
        if view.health.up:
            log.warning("region ejected", extra={"region": name, "error": reason})
        view.health = replace(view.health, up=False, misses=DOWN_AFTER_MISSES, successes=0)
        view.last_error = reason

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(view) for view in self.views.values()))

    async def probe(self, view: RegionView) -> None:
        session = self.session
        started = time.perf_counter()
        try:
            async with session.get(view.region.url + "/readyz") as response:
                report = await response.json(content_type=None)
                ok = response.status == 200
                error = "" if ok else f"/readyz answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            view.observe(False, None, None, f"{type(exc).__name__}: {exc}"[:200])
            return
        view.observe(ok, report, (time.perf_counter() - started) * 1000, error)

    async def _open(self) -> None:
        await super()._open()  # the session
        await self.probe_all()  # the first request already sees who is up

    async def _loop(self) -> None:
        await every(self.settings.interval, self.probe_all)

    def __repr__(self) -> str:
        states = ", ".join(f"{n}={v.health.status}" for n, v in self.views.items())
        return f"<RegionProber {states}>"
