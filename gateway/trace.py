"""What happened to one request: filled in along the path, read by the access log
and the metrics. Never holds a token, a key or a prompt."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from gateway.asgi import Scope

TRACE_KEY = "ghostgate.trace"


class Stage(Enum):
    """Where a request is; the `stage` label of a cancellation."""

    RECEIVING = "receiving"
    QUEUED = "queued"
    PREFILL = "prefill"  # sent to a backend, no token back yet
    STREAMING = "streaming"
    DONE = "done"


@dataclass(slots=True)
class Trace:
    """Timings and outcome of one request, all times from `time.perf_counter()`."""

    request_id: str
    route: str
    started: float
    user: str = ""
    group: str | None = None  # the superseding group, when the request has one
    model: str = ""
    backend: str = ""
    stage: Stage = Stage.RECEIVING
    status: int = 0
    outcome: str = "ok"
    response_started: bool = False
    attempts: int = 0
    queue_wait: float = 0.0
    upstream_sent: float = 0.0
    upstream_first_byte: float = 0.0
    client_first_byte: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    streamed_tokens: int = 0  # relayed so far (lines or events); final counts may lag
    requested_tokens: int = 0
    done_reason: str = ""
    error: str = ""

    def overhead(self) -> float | None:
        """Seconds spent in the gateway itself, queueing excluded; None if not relayed."""
        if not (self.upstream_sent and self.upstream_first_byte and self.client_first_byte):
            return None
        before = self.upstream_sent - self.started - self.queue_wait
        after = self.client_first_byte - self.upstream_first_byte
        return max(0.0, before) + max(0.0, after)


# Log fields a client can make long, cut to these: a log line stays a line,
# and an error message that quoted a body could not carry much of it.
MAX_LOGGED_USER = 128  # characters
MAX_LOGGED_MODEL = 256  # bytes of UTF-8, as `Limits.max_model_name_bytes`
MAX_LOGGED_ERROR = 200  # characters


def access_fields(trace: Trace, scope: Scope, now: float) -> dict[str, object]:
    """The fields every access log line has (gateway and router alike), with the
    user, model and error when known, each cut to its bound.

    Never the query string, headers or body: they may carry a key, a token or code.
    """
    fields: dict[str, object] = {
        "request_id": trace.request_id,
        "method": scope["method"],
        "path": scope["path"] if trace.route != "other" else "other",
        "http_version": scope.get("http_version", ""),
        "status": trace.status or 499,
        "outcome": trace.outcome,
        "duration_ms": round((now - trace.started) * 1000, 2),
    }
    if trace.client_first_byte:
        fields["ttft_ms"] = round((trace.client_first_byte - trace.started) * 1000, 2)
    overhead = trace.overhead()
    if overhead is not None:
        fields["overhead_ms"] = round(overhead * 1000, 3)
    if trace.user:
        fields["user"] = trace.user[:MAX_LOGGED_USER]
    if trace.model:
        model = trace.model.encode("utf-8", "surrogatepass")[:MAX_LOGGED_MODEL]
        fields["model"] = model.decode("utf-8", "ignore")  # never half a character
    if trace.error:
        fields["error"] = trace.error[:MAX_LOGGED_ERROR]
    return fields


def trace_of(scope: Scope) -> Trace:
    """The request's trace, made by the outermost middleware."""
    trace = scope.get(TRACE_KEY)
    if trace is None:  # an app mounted without the middleware (tests)
        trace = Trace(request_id="-", route=scope.get("path", ""), started=time.perf_counter())
        scope[TRACE_KEY] = trace
    assert isinstance(trace, Trace)
    return trace
