"""The simulated model's pure parts: timing arithmetic, deterministic text, stop sequences."""

from __future__ import annotations

import itertools

import pytest

from workers.sim import model
from workers.sim.model import LengthPlan, StopFilter


def take(stream: object, n: int) -> list[str]:
    assert hasattr(stream, "__next__")
    return list(itertools.islice(stream, n))  # type: ignore[call-overload]


@pytest.mark.parametrize(("prompt", "tokens"), [("", 1), ("a", 1), ("abcd", 1), ("abcde", 2)])
def test_prompt_tokens_are_a_quarter_of_the_characters_rounded_up(prompt: str, tokens: int) -> None:
    assert model.prompt_token_count(prompt) == tokens
    assert model.prompt_token_count("x" * 4000) == 1000


def test_same_model_and_prompt_give_the_same_tokens() -> None:
    first = take(model.token_stream("starcoder2:3b", "def fib(n):"), 200)
    again = take(model.token_stream("starcoder2:3b", "def fib(n):"), 200)
    assert first == again
    assert first != take(model.token_stream("starcoder2:3b", "def fib(m):"), 200)
    assert first != take(model.token_stream("deepseek-coder:6.7b-base", "def fib(n):"), 200)
    # Stable across processes: a fixed hash, not Python's salted hash().
    assert model.text_seed("m", "p") == model.text_seed("m", "p")
    assert model.text_seed("m", "p") != model.text_seed("m", "q")


def test_text_looks_like_code_and_starts_on_the_cursor_line() -> None:
    text = "".join(take(model.token_stream("m", "def f():"), 300))
    assert not text.startswith("\n")
    assert "\n    " in text and "(" in text and " = " in text
    assert set(take(model.token_stream("m", "x"), 500)) <= set(model.VOCABULARY)


def test_length_plan_num_predict_capped_else_from_the_seed() -> None:
    assert model.plan_length(7, 123, low=16, high=64, cap=4096) == LengthPlan(7, by_limit=True)
    assert model.plan_length(10**6, 1, low=16, high=64, cap=4096) == LengthPlan(4096, True)
    natural = [model.plan_length(None, seed, low=16, high=64, cap=4096) for seed in range(500)]
    assert {p.tokens for p in natural} == set(range(16, 65))
    assert all(not p.by_limit and p.done_reason == "stop" for p in natural)
    # -1 is Ollama's "until the model stops".
    assert model.plan_length(-1, 3, low=16, high=64, cap=4096).by_limit is False
    assert LengthPlan(5, True).done_reason == "length"


def test_rates() -> None:
    assert model.prefill_seconds(1000, 2000.0) == pytest.approx(0.5)
    assert model.decode_interval(50.0) == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("lost_at", "wasted"),
    [(None, 0), (0.5, 1000), (1.0, 1000), (1.5, 500), (1.9, 100), (2.0, 0), (3.0, 0)],
)
def test_prompt_tokens_after_client_left_is_the_share_of_prefill_time(
    lost_at: float | None, wasted: int
) -> None:
    assert model.prompt_tokens_after(1000, 1.0, 2.0, lost_at) == wasted


def test_stop_filter_cuts_before_the_stop_and_holds_partial_matches() -> None:
    stop = StopFilter(["\n\n"])
    assert stop.feed("x = 1") == ("x = 1", False)
    assert stop.feed("\n") == ("", False)  # might be the start of "\n\n": held back
    assert stop.feed("y") == ("\ny", False)  # it was not
    assert stop.feed("\n") == ("", False)
    assert stop.feed("\nz") == ("", True)  # never emitted: the stop and what follows


def test_stop_filter_finds_stops_spanning_tokens_and_flushes_the_rest() -> None:
    stop = StopFilter(["def ", "</end>"])
    assert stop.feed("a</e") == ("a", False)
    assert stop.feed("nd>b") == ("", True)
    other = StopFilter(["</end>"])
    assert other.feed("ok</") == ("ok", False)
    assert other.flush() == "</"
    assert StopFilter([]).feed("\n") == ("\n", False)
    assert StopFilter(["", "x"]).feed("abc") == ("abc", False)


def test_context_is_short_and_deterministic() -> None:
    ids = list(range(100))
    context = model.context_ids(7, ids)
    assert len(context) == 32 and context == model.context_ids(7, ids)
