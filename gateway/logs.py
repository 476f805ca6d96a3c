"""Logging as one JSON line per record, for every Ghostgate process.

The access log's fields are chosen where requests end (gateway/boundary.py):
never a token, a key or a prompt.
"""

from __future__ import annotations

import json
import logging
import sys


def configure_logging(level: str) -> None:
    """JSON lines on stderr for every logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def json_line(record: logging.LogRecord) -> str:
    """One log record as one JSON line: message, level, logger and the `extra` fields."""
    payload: dict[str, object] = {
        "ts": round(record.created, 3),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            payload[key] = value
    if record.exc_info:
        payload["exc"] = logging.Formatter().formatException(record.exc_info)
    return json.dumps(payload, default=str)


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json_line(record)
