"""The routes a client can call, and the in-process parser that judges each body.

`Route` is the client's view (method, path, error dialect, whether a backend
answers, the scope it needs); `parser_of` names the pure parser that says, in
the test process, whether a body is the client's fault (tests/fuzz/oracle.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.dialects import parse_chat, parse_generate
from gateway.dialects.ollama.request import parse_model_field
from gateway.dialects.openai.request import parse_chat_completion, parse_completion

MODELS = ("starcoder2:3b", "deepseek-coder:6.7b-base")
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """One API route as a client sees it."""

    name: str
    method: str
    path: str
    dialect: str  # "ollama" | "openai": the shape of its error bodies
    generates: bool = False  # reaches a backend with a parsed body
    backend: bool = False  # may answer a backend's 502/503/504 (generation, show, version)
    scope: str = ""  # the token scope it needs, "" for any valid token
    served_by: str = "both"  # "router": elsewhere an unknown path, in any dialect

    @property
    def has_body(self) -> bool:
        return self.method == "POST"


ROUTES = (
    Route("generate", "POST", "/api/generate", "ollama", True, True, "completions"),
    Route("chat", "POST", "/api/chat", "ollama", True, True, "chat"),
    Route("show", "POST", "/api/show", "ollama", False, True),
    Route("tags", "GET", "/api/tags", "ollama"),
    Route("ps", "GET", "/api/ps", "ollama"),
    Route("version", "GET", "/api/version", "ollama", False, True),
    Route("completions", "POST", "/v1/completions", "openai", True, True, "completions"),
    Route("chat_completions", "POST", "/v1/chat/completions", "openai", True, True, "chat"),
    Route("models", "GET", "/v1/models", "openai"),
    Route(
        "copilot",
        "POST",
        "/v1/engines/copilot-codex/completions",
        "openai",
        True,
        True,
        "completions",
    ),
)
BODY_ROUTES = tuple(r for r in ROUTES if r.has_body)
BY_NAME = {r.name: r for r in ROUTES}

# Paths beside the API routes: the router's own endpoints, the operational
# ones, unknown paths and the router's forwarded prefixes. `dialect` "" means
# no particular error shape is expected.
OTHER_ROUTES = (
    Route("token", "POST", "/v1/token", "openai", served_by="router"),
    Route("copilot_token", "GET", "/copilot_internal/v2/token", "openai", served_by="router"),
    Route("route", "GET", "/v1/route", "openai", served_by="router"),
    Route("status", "GET", "/v1/status", "openai", served_by="router"),
    Route("jwks", "GET", "/.well-known/jwks.json", "openai", served_by="router"),
    Route("root", "GET", "/", ""),
    Route("healthz", "GET", "/healthz", ""),
    Route("readyz", "GET", "/readyz", ""),
    Route("metrics", "GET", "/metrics", ""),
    Route("embeddings", "POST", "/api/embeddings", ""),
    Route("v1_other", "GET", "/v1/embeddings", ""),
    Route("unknown", "GET", "/nope", ""),
    Route("wrong_method", "DELETE", "/api/generate", ""),
    Route("head", "HEAD", "/", ""),
)


def parser_of(route: Route) -> Callable[[bytes], object] | None:
    """The in-process parser that judges `route`'s body, if it has one."""
    return {
        "generate": parse_generate,
        "chat": parse_chat,
        "show": parse_model_field,
        "completions": parse_completion,
        "chat_completions": parse_chat_completion,
        "copilot": lambda raw: parse_completion(raw, model="copilot-codex"),
    }.get(route.name)
