"""Access-log fields a client can make long are cut: the model to 256 bytes, the
user to 128 characters, an error to 200; an unknown route's path is never logged."""

from __future__ import annotations

from gateway.middleware import _access_fields
from gateway.trace import Trace, access_fields

SCOPE = {"type": "http", "method": "POST", "path": "/v1/completions", "http_version": "2"}


def long_trace() -> Trace:
    trace = Trace(request_id="r", route="/v1/completions", started=0.0)
    trace.model = "é" * 1000  # two bytes each
    trace.user = "u" * 1000
    trace.error = "e" * 10_000
    trace.done_reason = "d" * 1000
    return trace


def test_long_fields_are_cut_for_every_process() -> None:
    fields = access_fields(long_trace(), SCOPE, 1.0)
    model = fields["model"]
    assert isinstance(model, str) and model == "é" * 128 and len(model.encode()) == 256
    assert fields["user"] == "u" * 128 and fields["error"] == "e" * 200


def test_a_cut_never_splits_a_character() -> None:
    trace = long_trace()
    trace.model = "a" + "é" * 200  # byte 256 falls inside a character
    model = access_fields(trace, SCOPE, 1.0)["model"]
    assert isinstance(model, str) and len(model.encode()) == 255


def test_the_regions_log_line_keeps_the_cuts() -> None:
    fields = _access_fields(long_trace(), SCOPE, 1.0)
    assert fields["model"] == "é" * 128 and fields["user"] == "u" * 128
    assert fields["error"] == "e" * 200 and fields["done_reason"] == "d" * 64


def test_short_fields_are_kept_and_unknown_paths_are_not_logged() -> None:
    trace = Trace(request_id="r", route="other", started=0.0, model="starcoder2:3b", user="alice")
    fields = _access_fields(trace, {**SCOPE, "path": "/secret/token"}, 1.0)
    assert fields["model"] == "starcoder2:3b" and fields["user"] == "alice"
    assert fields["path"] == "other" and "error" not in fields
