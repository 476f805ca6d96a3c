"""The Ollama dialect refuses a model no backend serves in `parse`: before the
name reaches the template cache, the supersede group, the memory or the queue."""

from __future__ import annotations

import json

import pytest

from gateway.dialects import OllamaGeneration, parse_chat, parse_generate
from gateway.dialects.ollama.request import FieldOutOfBounds
from gateway.errors import ModelNotFound
from gateway.pool import Priority
from gateway.services import Services
from gateway.settings import BackendSpec, GatewaySettings, Limits

SERVED = "starcoder2:3b"


def region(healthy: bool = True, limits: Limits | None = None) -> Services:
    settings = GatewaySettings(backends=(BackendSpec("http://b1"),), limits=limits or Limits())
    services = Services.build(settings)
    (backend,) = services.scheduler.backends
    backend.healthy, backend.models = healthy, frozenset({SERVED})
    return services


def generate(services: Services) -> OllamaGeneration:
    return OllamaGeneration(services, "/api/generate", parse_generate, Priority.COMPLETION)


def body(model: str) -> bytes:
    return json.dumps({"model": model, "prompt": "def"}).encode()


def test_a_served_model_is_parsed() -> None:
    services = region()
    assert generate(services).parse({}, body("starcoder2:3b")).model == SERVED
    chat = OllamaGeneration(services, "/api/chat", parse_chat, Priority.CHAT)
    raw = json.dumps({"model": SERVED, "messages": []}).encode()
    assert chat.parse({}, raw).model == SERVED


def test_an_unknown_model_is_404_before_any_cache() -> None:
    services = region()
    dialect = generate(services)
    for n in range(100):
        with pytest.raises(ModelNotFound) as info:
            dialect.parse({}, body(f"made-up-{n}" + "x" * 200))
        assert info.value.status == 404
        assert len(info.value.message) < 120  # the name is cut, not echoed whole
    assert not services.templates._entries and not services.templates._locks


def test_no_healthy_backend_is_the_schedulers_503_not_a_404() -> None:
    # Model lists of a region whose backends are all down may be stale or empty.
    dialect = generate(region(healthy=False))
    assert dialect.parse({}, body("anything:7b")).model == "anything:7b"


def test_the_dialect_applies_the_regions_limits() -> None:
    dialect = generate(region(limits=Limits(max_stop_sequences=1)))
    raw = json.dumps({"model": SERVED, "options": {"stop": ["a", "b"]}}).encode()
    with pytest.raises(FieldOutOfBounds):
        dialect.parse({}, raw)
