"""The process's connections as plain data: the bound, and whom to shed when full.

A process holds at most `limit` connections. When a new one arrives at the
bound, the connection idle (no request in flight) the longest is closed to make
room; when none is idle, the new one is refused, since every held one is
serving someone. Activity (a read, a request starting or ending) moves a
connection to the back, so the front is always the longest quiet.

No I/O here: the Hypercorn patch (patches/connections.py) asks this table and
closes what it names. `ConnectionStats` is what the metrics read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol


class Tracked(Hashable, Protocol):
    @property
    def busy(self) -> bool:
        """A request is in flight on it."""
        ...


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    shed: Tracked | None = None  # close this one to make room


@dataclass(slots=True)
class ConnectionTable:
    limit: int
    _live: OrderedDict[Tracked, None] = field(default_factory=OrderedDict)
    closed: dict[str, int] = field(default_factory=dict)  # by reason, for the metrics

    def admit(self, conn: Tracked) -> Admission:
        """Take `conn` in, naming the longest-idle one to shed when at the bound."""
        if len(self._live) < self.limit:
            self._live[conn] = None
            return Admission(True)
        victim = next((c for c in self._live if not c.busy), None)
        if victim is None:
            self.count("refused")
            return Admission(False)
        del self._live[victim]
        self.count("shed")
        self._live[conn] = None
        return Admission(True, victim)

    def touch(self, conn: Tracked) -> None:
        if conn in self._live:
            self._live.move_to_end(conn)

    def remove(self, conn: Tracked) -> None:
        self._live.pop(conn, None)

    def count(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1

    @property
    def live(self) -> int:
        return len(self._live)

    def __repr__(self) -> str:
        return f"<ConnectionTable live={self.live}/{self.limit} closed={self.closed}>"


class ConnectionStats(Protocol):
    """What /metrics reads of a process's connections."""

    @property
    def live(self) -> int: ...

    @property
    def limit(self) -> int: ...

    closed: dict[str, int]
