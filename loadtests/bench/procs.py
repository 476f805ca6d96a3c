"""CPU time and memory of the processes under test, from /proc (Linux).

A path's cost is counted over its process tree (nginx's master and workers, a
region with worker processes): `utime + stime` from `/proc/<pid>/stat` (in
clock ticks, 10 ms each on most kernels, so runs are long enough for hundreds
of ticks) and `VmRSS`/`VmHWM` from `/proc/<pid>/status`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, utime + stime in ticks) from a /proc/<pid>/stat line.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(rest[1]), int(rest[11]) + int(rest[12])


def parse_status_kib(text: str, name: str) -> int:
    """A `Name:   1234 kB` value of /proc/<pid>/status, in KiB (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid` alive now."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent, _ = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass(frozen=True, slots=True)
class Usage:
    """A process tree's CPU seconds so far and its memory now."""

    cpu_seconds: float
    rss_mb: float  # MB = 10**6 bytes, the unit of the targets
    peak_rss_mb: float  # the largest VmHWM of one process in the tree


def usage(pid: int) -> Usage:
    """CPU time (user + system) and RSS of `pid` and its descendants."""
    ticks, rss, peak = 0, 0, 0
    for member in (pid, *children_of(pid)):
        try:
            _, member_ticks = parse_stat((PROC / str(member) / "stat").read_text())
            status = (PROC / str(member) / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        ticks += member_ticks
        rss += parse_status_kib(status, "VmRSS")
        peak = max(peak, parse_status_kib(status, "VmHWM"))
    return Usage(ticks / TICKS_PER_SECOND, rss * 1024 / 1e6, peak * 1024 / 1e6)


class CpuMeter:
    """CPU seconds spent by some process trees between `start` and `stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._before: dict[str, Usage] = {}

    def start(self) -> None:
        self._before = {name: usage(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, Usage]:
        """Per name: CPU seconds spent since `start`, and memory now."""
        result = {}
        for name, pid in self.pids.items():
            now = usage(pid)
            spent = now.cpu_seconds - self._before[name].cpu_seconds
            result[name] = Usage(spent, now.rss_mb, now.peak_rss_mb)
        return result
