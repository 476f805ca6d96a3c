"""A region's health as seen by the router's probes, as a pure state machine.

The router probes every region's `/readyz` each second and feeds the outcome to
`RegionHealth.observe`, which returns the next state:

    unknown --good--> up                     (first good probe ever)
    up      --2 misses in a row--> down
    down    --2 good probes in a row--> up

A region starts unknown, which routes like down: a router that has just started
must not send developers to a region it has never seen answer. It becomes up on
its first good probe rather than its second, because the hysteresis exists to
stop a flapping region from bouncing traffic around, and a region that has
never been up has no traffic to bounce; waiting would only delay start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

DOWN_AFTER_MISSES = 2
UP_AFTER_SUCCESSES = 2

HealthStatus = Literal["unknown", "up", "down"]


@dataclass(frozen=True, slots=True)
class RegionHealth:
    """Whether a region takes traffic, and the probe streak that decides the next move.

    `misses` and `successes` count consecutive probes; one resets the other.
    `seen` says whether the region has ever been up.
    """

    up: bool = False
    misses: int = 0
    successes: int = 0
    seen: bool = False

    @property
    def status(self) -> HealthStatus:
        """`unknown` until the first good probe, then `up` or `down`."""
        if not self.seen:
            return "unknown"
        return "up" if self.up else "down"

    def observe(
        self,
        ok: bool,
        *,
        down_after: int = DOWN_AFTER_MISSES,
        up_after: int = UP_AFTER_SUCCESSES,
    ) -> RegionHealth:
        """The state after one probe: `ok` if `/readyz` answered 200 in time."""
        if ok:
            return self._success(up_after)
        return self._miss(down_after)

    def _success(self, up_after: int) -> RegionHealth:
        successes = self.successes + 1
        up = self.up or not self.seen or successes >= up_after
        return RegionHealth(up=up, misses=0, successes=successes, seen=self.seen or up)

    def _miss(self, down_after: int) -> RegionHealth:
        misses = self.misses + 1
        up = self.up and misses < down_after
        return replace(self, up=up, misses=misses, successes=0)
