from __future__ import annotations

import random
import re
from collections.abc import Iterable

import pytest

from gateway.completion.fim import DEEPSEEK, STARCODER
from gateway.completion.output import (
    CompletionFilter,
    IndentationTrimmer,
    OutputRules,
    StopScanner,
    copilot_rules,
    current_indent,
    indentation,
    next_indent,
)
from gateway.dialects.openai.stream import ChoiceState


def finish_text(text: str, rules: OutputRules) -> str:
    """A whole (non-streamed) completion through the rules, as one chunk."""
    output = rules.filter()
    return output.feed(text) + output.flush()


def run(stage: StopScanner | IndentationTrimmer | CompletionFilter, chunks: Iterable[str]) -> str:
    """Feed chunks until the stage stops, as the relay does, then flush."""
    out = []
    for chunk in chunks:
        out.append(stage.feed(chunk))
        if stage.stopped:
            break
    out.append(stage.flush())
    return "".join(out)


def chars(text: str) -> list[str]:
    return list(text)


# --- StopScanner ---------------------------------------------------------------


def test_stop_split_over_two_chunks() -> None:
    scanner = StopScanner(("\n\n",))
    assert scanner.feed("x = 1\n") == "x = 1"  # the newline might begin the stop
    assert scanner.held == "\n"
    assert scanner.feed("\ny = 2") == ""
    assert scanner.stopped and scanner.hit == "\n\n"
    assert scanner.flush() == ""
    assert scanner.feed("more") == ""


def test_held_text_that_is_not_a_stop_is_released() -> None:
    scanner = StopScanner(("\n\n",))
    assert scanner.feed("a\n") == "a"
    assert scanner.feed("b") == "\nb"
    assert scanner.feed("\n") == ""
    assert scanner.flush() == "\n"
    assert not scanner.stopped


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_a_long_token_split_anywhere_is_caught(size: int) -> None:
    token = DEEPSEEK.stop[3]  # <｜end▁of▁sentence｜>
    text = "return x" + token + "garbage"
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    scanner = StopScanner(DEEPSEEK.stop)
    assert run(scanner, chunks) == "return x"
    assert scanner.hit == token


def test_the_earliest_stop_wins() -> None:
    scanner = StopScanner(("END", "<|endoftext|>", "\n\n"))
    assert run(scanner, ["a\n\nb END <|endoftext|>"]) == "a"
    assert scanner.hit == "\n\n"


def test_a_longer_stop_that_began_earlier_wins() -> None:
    # "b" is complete first, but "<|ba" started before it and completes later.
    scanner = StopScanner(("<|ba", "b"))
    assert scanner.feed("x<|") == "x"
    assert scanner.feed("b") == ""
    assert not scanner.stopped
    assert scanner.feed("a!") == "" and scanner.hit == "<|ba"


def test_a_stop_held_at_the_end_of_the_stream_is_still_cut() -> None:
    scanner = StopScanner(("<|ba", "b"))
    assert scanner.feed("x<|b") == "x"
    assert scanner.flush() == "<|" and scanner.hit == "b"


def test_no_stops_passes_everything_through() -> None:
    scanner = StopScanner(("", ""))
    assert scanner.feed("abc") == "abc" and scanner.flush() == ""
    assert scanner.stops == ()


def test_text_without_stop_prefixes_is_not_held() -> None:
    scanner = StopScanner(("<|endoftext|>",))
    assert scanner.feed("if a < b") == "if a < b"
    assert scanner.feed(" <") == " "  # "<" could start the token
    assert scanner.feed("= c") == "<= c"


# --- token stripping ---------------------------------------------------------------


def test_family_tokens_end_the_output() -> None:
    rules = OutputRules(stop=STARCODER.stop)
    assert finish_text("x = 1\n<file_sep>other file", rules) == "x = 1\n"


# --- single line ---------------------------------------------------------------------


def test_single_line_stops_at_the_first_newline() -> None:
    output = OutputRules(single_line=True).filter()
    assert run(output, ["foo(", "a, b)", "\n", "bar()"]) == "foo(a, b)"
    assert output.stopped


def test_single_line_drops_the_carriage_return_of_crlf() -> None:
    rules = copilot_rules("x = ", "", ["\n"], {"trim_by_indentation": True})
    assert rules.single_line and rules.break_indent is None
    assert run(rules.filter(), ["1\r", "\n", "y = 2"]) == "1"


def test_single_line_with_a_leading_newline_is_empty() -> None:
    assert finish_text("\nfoo", OutputRules(single_line=True)) == ""


# --- trim_by_indentation ----------------------------------------------------------------

BODY = "\n".join(
    [
        "        total += x",
        "    return total",
        "",
        "def other():",
        "    pass",
    ]
)


def test_indentation_rule_fills_an_empty_block_and_stops_after_it() -> None:
    # def f(xs):\n    total = 0\n    for x in xs:\n        |   (nothing after)
    prompt = "def f(xs):\n    total = 0\n    for x in xs:\n        "
    rules = copilot_rules(prompt, "", [], {"trim_by_indentation": True, "next_indent": 0})
    assert rules.break_indent == 4
    assert finish_text(BODY, rules) == "        total += x"


def test_indentation_rule_keeps_a_dedented_body_to_the_block_level() -> None:
    prompt = "def f(xs):\n    "
    rules = copilot_rules(prompt, "", [], {"trim_by_indentation": True, "next_indent": 0})
    assert rules.break_indent == 0
    completion = "total = 0\n    for x in xs:\n        total += x\n\n    return total\n\ndef g():"
    assert finish_text(completion, rules) == (
        "total = 0\n    for x in xs:\n        total += x\n\n    return total\n"
    )


def test_equal_indentation_continues_only_for_brackets_and_keywords() -> None:
    text = "if (a) {\n  b();\n} else {\n  c();\n}\nd();"
    assert run(IndentationTrimmer(0), [text]) == "if (a) {\n  b();\n} else {\n  c();\n}"
    assert run(IndentationTrimmer(2), [text]) == "if (a) {"  # `  b();` is a new statement


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("else:", True),
        ("elif x:", True),
        ("end", True),
        ("}", True),
        (")", True),
        ("ELSE", True),
        ("endif", False),
        ("elsewhere()", False),
        ("x = 1", False),
    ],
)
def test_continuation_lines(line: str, kept: bool) -> None:
    text = "first\n" + line
    assert finish_text(text, OutputRules(break_indent=0)) == (text if kept else "first")


def test_the_first_line_is_always_kept() -> None:
    assert finish_text("x\ny", OutputRules(break_indent=8)) == "x"


def test_indentation_rule_streamed_one_character_at_a_time() -> None:
    text = "a\n  b\n\nelse_x\nelse:\n  c\nd"
    expected = finish_text(text, OutputRules(break_indent=0))
    assert expected == "a\n  b\n"  # the blank line stays, the newline before the cut goes
    assert run(IndentationTrimmer(0), chars(text)) == expected


def test_keyword_split_across_chunks_is_judged_once_complete() -> None:
    trimmer = IndentationTrimmer(0)
    assert trimmer.feed("x\n") == "x"
    assert trimmer.feed("el") == ""  # could be `else`: held
    assert trimmer.feed("se:\n  y") == "\nelse:\n  y"
    assert not trimmer.stopped


def test_a_trailing_held_line_is_released_at_the_end() -> None:
    trimmer = IndentationTrimmer(0)
    assert trimmer.feed("x\n   ") == "x"
    assert trimmer.flush() == "\n   "


def test_trimmer_stops_the_stream() -> None:
    output = OutputRules(break_indent=4).filter()
    assert output.feed("x\n      y\n") == "x\n      y"
    assert output.feed("  z") == "" and output.stopped
    assert output.flush() == ""


def test_next_indent_is_measured_from_the_suffix_when_absent() -> None:
    rules = copilot_rules("  a = ", " 1\n\n      b\n", [], {"trim_by_indentation": True})
    assert rules.break_indent == 6


def test_indentation_trimming_is_off_unless_asked() -> None:
    assert copilot_rules("x", "", [], {}).break_indent is None
    assert copilot_rules("x", "", [], {"trim_by_indentation": "yes"}).break_indent is None


def test_indentation_helpers() -> None:
    assert indentation("    x") == 4
    assert indentation("\tx") == 1
    assert indentation("   ") is None
    assert current_indent("def f():\n    x = 1\n\n  ") == 4
    assert current_indent("") == 0
    assert next_indent("rest of line\n\n   y") == 3
    assert next_indent("only the cursor line") == 0


# --- the whole chain ------------------------------------------------------------------


def test_chain_stops_then_trims_then_flushes_downstream() -> None:
    rules = copilot_rules(
        "def f():\n    ", "", ["\n\n\n"], {"trim_by_indentation": True}, STARCODER.stop
    )
    output = rules.filter()
    assert output.feed("return 1\n") == "return 1"
    assert output.feed("   ") == ""
    assert output.feed("<|endoftext|>x") == "\n   "
    assert output.stopped and output.flush() == ""


def test_filter_satisfies_the_openai_choice() -> None:
    choice = ChoiceState(index=0, filter=OutputRules(stop=("\n\n",)).filter())
    assert choice.on_line({"response": "a\n", "done": False}, chat=False) == "a"
    assert choice.on_line({"response": "\nb", "done": False}, chat=False) == ""
    assert choice.finish_reason == "stop" and "".join(choice.text) == "a"


def test_filter_repr_shows_its_state() -> None:
    output = OutputRules(stop=("\n\n",), break_indent=0).filter()
    output.feed("a\n")
    assert "held='\\n'" in repr(output)


# --- differential: random text in random chunks against whole-text references ----------

_CONTINUATION = re.compile(
    r"^(\{|\}|\[|\]|\(|\)|(then|else|elseif|elif|catch|finally|fi|done|end|loop|until|where|when)\b)"
)


def copilot_cut(completion: str, break_indent: int) -> str:
    """Copilot's `completionCutOrContinue` (not a continuation), then the cut applied."""
    lines = completion.split("\n")
    for i in range(1, len(lines)):
        indent = indentation(lines[i])
        if indent is not None and (
            indent < break_indent
            or (indent == break_indent and not _CONTINUATION.match(lines[i].lstrip().lower()))
        ):
            return "\n".join(lines[:i])
    return completion


def first_stop_cut(text: str, stops: Iterable[str]) -> str:
    hits = [text.find(s) for s in stops if s and s in text]
    return text[: min(hits)] if hits else text


def random_chunks(rng: random.Random, text: str) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 8))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_streaming_matches_whole_text_rules() -> None:
    rng = random.Random(20241121)
    pieces = ["\n", "  ", "\t", "x", "el", "se", "end", "}", "(", "_", "<", "|", "ab", "\r"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        stops = tuple(
            "".join(rng.choice("ab<|\n") for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(0, 2))
        )
        break_indent = rng.choice([None, 0, 1, 2])
        rules = OutputRules(stops, single_line=False, break_indent=break_indent)
        expected = first_stop_cut(text, stops)
        if break_indent is not None:
            expected = copilot_cut(expected, break_indent)
        assert run(rules.filter(), random_chunks(rng, text)) == expected, (text, rules)
