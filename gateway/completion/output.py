"""What generated text a client sees: stop sequences, FIM tokens, Copilot's cut rules.

Everything here works on a stream. `CompletionFilter` chains small stages, each
with `feed(chunk) -> text safe to emit now`, `flush() -> the rest` and `stopped`
(the generation can be cancelled):

- `StopScanner` cuts at the first stop sequence (the client's `stop` plus the FIM
  family's tokens), holding back a tail that could begin one across chunks.
- single-line mode ends at the first newline (Copilot sends `stop: ["\\n"]`).
- `IndentationTrimmer` applies Copilot's `trim_by_indentation` block rule.

Copilot's server-side rule is unpublished; this is the rule its client runs in
indentation mode (`completionCutOrContinue` in Copilot's `indentation.ts`), fed by
the request: `next_indent` is the client's `contextIndent.next ?? 0`, the
indentation of the next non-blank line after the cursor's. The first line is always
kept. A later line ends the completion, cut just before its newline, when it is not
blank and its indentation (leading whitespace characters; a tab counts one) is less
than `max(current, next_indent)`, or equal to it and the line does not start with a
bracket or a same-level keyword (`else`, `catch`, `end`, ...). `current` is the
indentation of the prompt's last non-blank line. So an empty block body may be
filled whole; elsewhere the completion is one statement. Copilot's special case for
Python docstrings is not reproduced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Copilot's `continuations`: lines at the block's own indentation that still belong to it.
_BRACKETS = frozenset("{}[]()")
_KEYWORDS = frozenset(
    "then else elseif elif catch finally fi done end loop until where when".split()
)
_WORD = re.compile(r"[a-z0-9_]*")
_INDENT = re.compile(r"[^\S\n]*")  # whitespace within a line
_SINGLE_LINE_STOPS = ("\r\n", "\n")


class TextStage(Protocol):
    """Decides what generated text the client sees, and when to stop: one step of
    a `CompletionFilter`, or a whole filter (what a streamed choice runs)."""

    @property
    def stopped(self) -> bool: ...

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


class PassThrough:
    """No filtering: every token as generated."""

    stopped = False

    def feed(self, text: str) -> str:
        return text

    def flush(self) -> str:
        return ""


@dataclass(slots=True)
class StopScanner:
    """Cuts a stream at the first stop sequence; `hit` says which one ended it."""

    stops: tuple[str, ...]
    hit: str | None = field(default=None, init=False)
    held: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.stops = tuple(dict.fromkeys(s for s in self.stops if s))

    @property
    def stopped(self) -> bool:
        return self.hit is not None

    def feed(self, text: str) -> str:
        """Text safe to emit: ends before a stop, or before what may begin one."""
        if self.stopped:
            return ""
        text, self.held = self.held + text, ""
        found = self._first_stop(text)
        # A longer stop that may still begin before the one found would win.
        pending = len(text) - self._partial_tail(text)
        if found is not None and found[1] <= pending:
            self.hit, index = found
            return text[:index]
        self.held = text[pending:]
        return text[:pending]

    def flush(self) -> str:
        """The end of the stream: a held tail is text, up to any stop within it."""
        held, self.held = self.held, ""
        found = None if self.stopped else self._first_stop(held)
        if found is not None:
            self.hit, index = found
            return held[:index]
        return "" if self.stopped else held

    def _first_stop(self, text: str) -> tuple[str, int] | None:
        best: tuple[str, int] | None = None
        for stop in self.stops:
            index = text.find(stop)
            if index >= 0 and (best is None or index < best[1]):
                best = (stop, index)
        return best

    def _partial_tail(self, text: str) -> int:
        # Any unfinished stop starts inside the longest tail that is a stop's prefix.
        longest = max((len(s) for s in self.stops), default=1)
        for size in range(min(len(text), longest - 1), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0


@dataclass(slots=True)
class IndentationTrimmer:
    """Copilot's `trim_by_indentation`, line by line (rule in the module docstring).

    Text is passed on as it comes, except from a newline up to the first
    non-blank character of the next line: that line's indentation decides
    whether the newline is part of the completion.
    """

    break_indent: int
    stopped: bool = field(default=False, init=False)
    held: str = field(default="", init=False)
    # Past the first line and not yet sure the current line continues the block.
    undecided: bool = field(default=False, init=False)

    def feed(self, text: str) -> str:
        out: list[str] = []
        while text and not self.stopped:
            if not self.undecided:
                newline = text.find("\n")
                if newline < 0:
                    out.append(text)
                    break
                out.append(text[:newline])
                self.held, self.undecided, text = "\n", True, text[newline + 1 :]
            else:
                text = self._decide(text, out)
        return "".join(out)

    def flush(self) -> str:
        # The text ends inside a held line: judge it as it stands.
        held, self.held = self.held, ""
        start = _content_start(held)
        if self.stopped or self._verdict(start - 1, held[start:], final=True) is False:
            return ""
        return held

    def _decide(self, text: str, out: list[str]) -> str:
        """Consume `text` into the held line until it is judged; return the rest."""
        self.held += text
        start = _content_start(self.held)
        if start < len(self.held) and self.held[start] == "\n":
            # A blank line: kept if the block goes on, so the next line is judged.
            out.append(self.held[:start])
            rest, self.held = self.held[start:], ""
            return rest
        verdict = self._verdict(start - 1, self.held[start:])
        if verdict is None:
            return ""  # need more of the line
        held, self.held = self.held, ""
        if verdict:
            self.undecided = False
            out.append(held[:start])
            return held[start:]
        self.stopped = True
        return ""

    def _verdict(self, indent: int, content: str, final: bool = False) -> bool | None:
        """True: the line continues the block; False: cut; None: not known yet."""
        if not content:
            return None
        if indent != self.break_indent:
            return indent > self.break_indent
        return _is_continuation(content, final)


def _content_start(held: str) -> int:
    """Index of the first character after the held newline that is not indentation."""
    match = _INDENT.match(held, min(1, len(held)))  # always matches: `*`
    return match.end() if match else len(held)


def _is_continuation(content: str, final: bool) -> bool | None:
    if content[0] in _BRACKETS:
        return True
    lowered = content.lower()
    word = _WORD.match(lowered)
    length = word.end() if word else 0
    if final or length < len(lowered):  # the word has ended: Copilot's `\b` holds
        return lowered[:length] in _KEYWORDS
    stem = lowered[:length]
    return None if any(k.startswith(stem) for k in _KEYWORDS) else False


def indentation(line: str) -> int | None:
    """Copilot's `indentationOfLine`: leading whitespace characters; None for a blank line."""
    content = line.lstrip()
    return len(line) - len(content) if content else None


def current_indent(prompt: str) -> int:
    """Indentation of the prompt's last non-blank line (Copilot's `contextIndent.current`)."""
    return _first_indent(reversed(prompt.split("\n")))


def next_indent(suffix: str) -> int:
    """Indentation of the first non-blank line after the cursor's, 0 if none (Copilot's)."""
    return _first_indent(suffix.split("\n")[1:])


def _first_indent(lines: Iterable[str]) -> int:
    return next((i for i in map(indentation, lines) if i is not None), 0)


@dataclass(frozen=True, slots=True)
class OutputRules:
    """How to post-process one completion: built once per request, then one filter per choice."""

    stop: tuple[str, ...] = ()
    single_line: bool = False
    # None: no indentation trimming; else Copilot's `max(current, next_indent)`.
    break_indent: int | None = None

    def filter(self) -> CompletionFilter:
        stages: list[TextStage] = [StopScanner(self.stop)]
        if self.single_line:
            # The newline stage ends before a CRLF's `\r` too, which a plain "\n"
            # stop in the first stage would have let through.
            stop = tuple(s for s in self.stop if s not in _SINGLE_LINE_STOPS)
            stages = [StopScanner(stop), StopScanner(_SINGLE_LINE_STOPS)]
        if self.break_indent is not None:
            stages.append(IndentationTrimmer(self.break_indent))
        return CompletionFilter(tuple(stages))


def copilot_rules(
    prompt: str,
    suffix: str,
    stop: Iterable[str],
    extra: Mapping[str, Any],
    fim_stop: Iterable[str] = (),
) -> OutputRules:
    """Rules for a Copilot request: its `stop` (`"\\n"` means one line) and `extra`.

    `extra.trim_by_indentation` turns the block rule on; `extra.next_indent`
    gives the next line's indentation, measured from `suffix` when absent.
    """
    stops = tuple(stop)
    single_line = "\n" in stops
    break_indent: int | None = None
    if extra.get("trim_by_indentation") is True and not single_line:
        following: object = extra.get("next_indent")
        if not isinstance(following, int) or isinstance(following, bool):
            following = next_indent(suffix)
        break_indent = max(current_indent(prompt), following)
    return OutputRules((*stops, *fim_stop), single_line, break_indent)


@dataclass(slots=True)
class CompletionFilter:
    """Stages run in order; once one stops, the later ones are flushed and all is done."""

    stages: tuple[TextStage, ...]
    done: bool = field(default=False, init=False)

    @property
    def stopped(self) -> bool:
        return any(stage.stopped for stage in self.stages)

    def feed(self, text: str) -> str:
        """Text for the client now; check `stopped` after each call."""
        return self._run(text, final=False)

    def flush(self) -> str:
        """Whatever was held back, at the end of the stream or after a stop."""
        return self._run("", final=True)

    def _run(self, text: str, final: bool) -> str:
        if self.done:
            return ""
        ending = final
        for stage in self.stages:
            text = stage.feed(text)
            if ending or stage.stopped:
                # Nothing more will reach the stages after this one: let them finish.
                text += stage.flush()
                ending = True
        self.done = ending
        return text
