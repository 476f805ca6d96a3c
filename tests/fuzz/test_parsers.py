"""The pure request parsers, fuzzed in-process: whatever the bytes, a parser
returns or raises a `GatewayError` (a 4xx in the route's dialect), never
anything else, which the boundary would turn into a 500.

Marked e2e with the rest of tests/fuzz; it needs no process and runs in a
second or two. tests/fuzz/parsers.py fuzzes the same functions with atheris.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.bodies import bodies
from tests.fuzz.parsers import PARSERS, check
from tests.fuzz.routes import BODY_ROUTES
from tests.fuzz.shares import examples, total

pytestmark = pytest.mark.e2e

ANY_BODY = st.sampled_from(BODY_ROUTES).flatmap(bodies)


@settings(max_examples=examples("parsers"))
@given(raw=ANY_BODY)
def test_parsers_raise_only_gateway_errors(raw: bytes) -> None:
    check(raw)


def test_every_parser_is_fuzzed() -> None:
    assert {name for name, _ in PARSERS} == {
        "parse_generate",
        "parse_chat",
        "parse_model_field",
        "parse_completion",
        "parse_completion(copilot)",
        "parse_chat_completion",
    }


def test_case_counts_follow_the_profile() -> None:
    """`make test` runs a few hundred cases, `make fuzz` at least 10,000."""
    profile = settings.get_current_profile_name()
    if profile == "ci":
        assert 200 <= total() <= 1000
    elif profile == "fuzz":
        assert total() >= 10_000
