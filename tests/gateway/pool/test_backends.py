from __future__ import annotations

from gateway.pool.backends import Backend, Verdict, choose_backend, normalize_model, served_models


def backend(
    url: str,
    *,
    models: tuple[str, ...] = ("m:latest",),
    loaded: tuple[str, ...] = (),
    inflight: int = 0,
    slots: int = 4,
    healthy: bool = True,
) -> Backend:
    return Backend(
        url=url,
        slots=slots,
        healthy=healthy,
        models=frozenset(models),
        loaded=frozenset(loaded),
        inflight=inflight,
    )


def test_normalize_model_adds_latest_and_strips_registry() -> None:
    assert normalize_model("starcoder2") == "starcoder2:latest"
    assert normalize_model("starcoder2:3b") == "starcoder2:3b"
    assert normalize_model("registry.ollama.ai/library/starcoder2:3b") == "starcoder2:3b"
    assert normalize_model("hf.co/org/model-GGUF:Q4") == "hf.co/org/model-GGUF:Q4"
    assert normalize_model("localhost:5000/x") == "localhost:5000/x:latest"


def test_prefers_backend_with_model_loaded_over_less_busy_one() -> None:
    cold = backend("a", inflight=0)
    warm = backend("b", loaded=("m:latest",), inflight=3)
    assert choose_backend([cold, warm], "m:latest").backend is warm


def test_least_outstanding_among_equals_and_stable_ties() -> None:
    a, b, c = backend("a", inflight=2), backend("b", inflight=1), backend("c", inflight=1)
    assert choose_backend([a, b, c], "m:latest").backend is b


def test_full_backends_are_busy_not_missing() -> None:
    full = backend("a", inflight=4)
    assert choose_backend([full], "m:latest").verdict is Verdict.BUSY


def test_unknown_model_only_when_no_backend_lists_it() -> None:
    assert choose_backend([backend("a")], "other:latest").verdict is Verdict.UNKNOWN_MODEL
    down = backend("b", models=("other:latest",), healthy=False)
    assert choose_backend([backend("a"), down], "other:latest").verdict is Verdict.UNAVAILABLE


def test_no_healthy_backend_is_unavailable() -> None:
    assert choose_backend([backend("a", healthy=False)], "x:latest").verdict is Verdict.UNAVAILABLE


def test_excluded_backends_are_skipped() -> None:
    a, b = backend("a"), backend("b", inflight=2)
    assert choose_backend([a, b], "m:latest", exclude=[a]).backend is b
    assert choose_backend([a], "m:latest", exclude=[a]).verdict is Verdict.UNAVAILABLE


def test_served_models_lists_healthy_backends_only() -> None:
    a = backend("a", models=("x:1", "y:1"))
    b = backend("b", models=("z:1",), healthy=False)
    assert served_models([a, b]) == ["x:1", "y:1"]
    assert "inflight=0/4" in repr(a)
