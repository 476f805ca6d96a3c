"""The oracle: what a client may get for what it sent.

The client's fault (`client_fault`): a header block over 16 KiB, a credential
that is not a valid token with the route's scope, a body over 1 MiB, or a body
the route's own parser refuses in-process (a `GatewayError`). Such a request
must get a status below 500. A request that is not the client's fault may also
get 502, 503 or 504 where its route reaches a backend. A 500, 501 or 505+ is
never right. Only a header block over the limit may go unanswered (a reset, or
GOAWAY for the sender's own connection). An error the gateway answered (it has
`X-Request-Id`) is in its route's dialect.
"""

from __future__ import annotations

import traceback

from gateway.errors import GatewayError
from tests.fuzz.peer import Answer
from tests.fuzz.routes import Route, parser_of
from tests.fuzz.strategies import Request

MAX_BODY = 1024 * 1024
MAX_HEADERS = 16 * 1024
NEVER = frozenset({500, 501}) | frozenset(range(505, 600))


def credential_ok(request: Request, target: str) -> bool:
    """Whether the credential lets `request` through (scopes included)."""
    kind = request.auth
    if kind == "valid":
        return True
    if kind == "api-key":
        return target == "router"
    if kind in ("admin-only", "wrong-scope"):
        return request.route.scope == ""
    return False


def client_fault(request: Request, target: str) -> str | None:
    """Why `request` is the client's fault, or None (module docstring)."""
    if header_bytes(request) > MAX_HEADERS:
        return "headers over 16 KiB"
    if not credential_ok(request, target):
        return f"credential {request.auth!r}"
    if len(request.body) > MAX_BODY:
        return "body over 1 MiB"
    parse = parser_of(request.route)
    if parse is not None:
        try:
            parse(request.body)
        except GatewayError as exc:
            return f"parser: {exc}"
        except Exception:
            # Not the client's fault in the gateway's own terms: a parser bug,
            # which the status check shows with this traceback.
            return None
    return None


def judge(request: Request, answer: Answer, target: str) -> None:
    """Raise AssertionError when `answer` breaks the module docstring's rules."""
    route = request.route
    fault = client_fault(request, target)
    where = f"{target}: {request!r} -> {answer.status} {answer.body[:300]!r}"
    if answer.status is None:
        assert fault == "headers over 16 KiB", f"no answer at all: {where}"
        return
    status = answer.status
    if status >= 500:
        allowed = status in (502, 503, 504) and fault is None and route.backend
        trace = parser_trace(route, request.body)
        assert allowed, f"{status} for {fault or 'a valid request'}: {where}{trace}"
    served = route.served_by in ("both", target)
    if status >= 400 and "x-request-id" in answer.headers and route.dialect and served:
        problem = dialect_problem(route, answer)
        assert problem is None, f"{problem}: {where}"


def header_bytes(request: Request) -> int:
    """The request's header list size as HTTP/2 counts it (RFC 9113 6.5.2), roughly."""
    return sum(len(n) + len(v) + 32 for n, v in request.headers) + 400


def parser_trace(route: Route, body: bytes) -> str:
    """The in-process parser's traceback for `body`, when it raises a non-GatewayError."""
    parse = parser_of(route)
    if parse is None:
        return ""
    try:
        parse(body)
    except GatewayError:
        return ""
    except Exception:
        return "\nthe parser, in-process:\n" + traceback.format_exc(limit=-4)
    return ""


def dialect_problem(route: Route, answer: Answer) -> str | None:
    """What is wrong with an error body for `route`'s API, or None."""
    payload = answer.json_error()
    if not isinstance(payload, dict) or "error" not in payload:
        return "error body is not {'error': ...}"
    error = payload["error"]
    if route.dialect == "ollama" and not isinstance(error, str):
        return "Ollama error is not a string"
    if route.dialect == "openai":
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            return "OpenAI error has no message"
        if not isinstance(error.get("type"), str):
            return "OpenAI error has no type"
    return None
