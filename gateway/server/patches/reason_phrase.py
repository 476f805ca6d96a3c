"""Hypercorn 0.18.0 sends HTTP/1.1 status lines with an empty reason phrase.

`HTTP/1.1 200 ` is allowed by RFC 9112, but some clients do not cope: h2load's
HTTP/1.1 mode never records the status of such a response and counts every one
as failed. The standard phrase (`200 OK`, `429 Too Many Requests`) is filled in
before h11 serialises the response.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import h11
from hypercorn.protocol.h11 import H11Protocol

from gateway.server.patches.base import Patch

PATCH = Patch(
    "reason-phrase",
    why="HTTP/1.1 status lines without a reason phrase break h2load --h1",
    requires={"hypercorn": "0.18.0", "h11": "0.16.0"},
)

REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


async def _send_h11_event_with_reason(self: Any, event: Any) -> None:
    if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
        # h11's events are frozen; this one is ours until it is sent.
        object.__setattr__(event, "reason", REASONS.get(event.status_code, b""))
    await _original_send_h11_event(self, event)


_original_send_h11_event = PATCH.replace(
    H11Protocol, "_send_h11_event", _send_h11_event_with_reason
)
