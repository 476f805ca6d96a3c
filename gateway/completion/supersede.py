"""Superseding: a newer completion request of the same group cancels the older one.

About half of all completions are abandoned because the developer typed on,
and many plugins never cancel what they abandon. A group is one editor's
stream of completions: `X-Ghostgate-Group` when the client sends it, else
(token subject, User-Agent) on the completion routes. Chat is never grouped
implicitly: a second chat question does not make the first one moot.

`Supersessions` holds the live request of each group. Claiming a group sets the
previous holder's event; the previous request's endpoint sees it (through
`asyncio.until_disconnect`'s cancel event), stops its upstream and ends its
client's stream cleanly with a "superseded" ending in its dialect.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

GROUP_HEADER = b"x-ghostgate-group"


def group_for(
    explicit: str | None,
    subject: str,
    user_agent: str | None,
    completion_route: bool,
    implicit: bool = True,
) -> str | None:
    """The request's group, or None when it must never be superseded.

    Groups are scoped to the token's subject, so one user can never cancel
    another's requests by guessing a group name.
    """
    if explicit:
        return _scoped(subject, "explicit", explicit[:200])
    if completion_route and implicit:
        return _scoped(subject, "agent", user_agent or "")
    return None


def _scoped(subject: str, kind: str, name: str) -> str:
    digest = hashlib.blake2b(f"{subject}\0{kind}\0{name}".encode(), digest_size=12)
    return digest.hexdigest()


@dataclass(eq=False, slots=True)
class Ticket:
    """One request's hold on its group."""

    group: str
    request_id: str
    # Wall clock: remote cancels compare it with another instance's clock.
    started: float = field(default_factory=time.time)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def superseded(self) -> bool:
        return self.cancelled.is_set()


class Supersessions:
    """The live request of each group in this process."""

    def __init__(self) -> None:
        self._live: dict[str, Ticket] = {}
        self.superseded_total = 0

    def claim(self, group: str, request_id: str) -> Ticket:
        """Make a new request the group's live one, cancelling the previous one."""
        ticket = Ticket(group, request_id)
        previous = self._live.get(group)
        self._live[group] = ticket
        if previous is not None and not previous.superseded:
            previous.cancelled.set()
            self.superseded_total += 1
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The request ended; forget it unless a newer one already holds the group."""
        if self._live.get(ticket.group) is ticket:
            del self._live[ticket.group]

    def cancel(self, group: str, before: float) -> bool:
        """Cancel the group's live request if it started before `before` (remote cancels)."""
        ticket = self._live.get(group)
        if ticket is None or ticket.started >= before or ticket.superseded:
            return False
        ticket.cancelled.set()
        self.superseded_total += 1
        return True

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Ticket]:
        return iter(list(self._live.values()))

    def __repr__(self) -> str:
        return f"<Supersessions live={len(self._live)} superseded={self.superseded_total}>"
