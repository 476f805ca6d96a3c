"""Coverage-guided fuzzing of the pure request parsers with atheris (libFuzzer).

    python -m tests.fuzz.parsers -atheris_runs=200000 [-max_len=4096] [CORPUS_DIR]

Every input is given to each parser of a request body; a parser may return or
raise a `GatewayError` (the client's fault, answered 4xx in the route's
dialect). Any other exception is a crash: libFuzzer prints it with its input
and writes the input to `crash-<sha1>` (`-artifact_prefix=DIR/` puts it
elsewhere). Without a corpus directory it starts from `SEEDS`, in a temporary
one. `make fuzz` runs this after the hypothesis profile.

`check` is also what tests/fuzz/test_parsers.py calls for hypothesis' inputs.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from gateway.dialects import parse_chat, parse_generate
from gateway.dialects.ollama import request as ollama_request
from gateway.dialects.ollama.request import parse_model_field
from gateway.dialects.openai import request as openai_request
from gateway.dialects.openai.request import parse_chat_completion, parse_completion
from gateway.errors import GatewayError

try:
    import atheris
except ImportError:  # atheris did not build: the hypothesis test still runs `check`
    atheris = None


def _copilot(raw: bytes) -> object:
    return parse_completion(raw, model="copilot-codex")


PARSERS: tuple[tuple[str, Callable[[bytes], object]], ...] = (
    ("parse_generate", parse_generate),
    ("parse_chat", parse_chat),
    ("parse_model_field", parse_model_field),
    ("parse_completion", parse_completion),
    ("parse_completion(copilot)", _copilot),
    ("parse_chat_completion", parse_chat_completion),
)

# Inputs libFuzzer starts from when no corpus is given: the shapes it should mutate.
SEEDS = (
    b'{"model": "starcoder2:3b", "prompt": "def f():", "options": {"num_predict": 8}}',
    b'{"model": "starcoder2:3b", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "m", "prompt": ["x"], "max_tokens": 5, "n": 2, "stop": ["\\n"],'
    b' "stream_options": {"include_usage": true}, "temperature": 0.2, "extra": {}}',
    b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],'
    b' "max_completion_tokens": 3, "seed": 1}',
    b'{"name": "starcoder2"}',
)


def check(raw: bytes) -> None:
    """Each parser on `raw`: anything but a `GatewayError` propagates."""
    for _, parse in PARSERS:
        try:
            parse(raw)
        except GatewayError:
            pass


def one_input(data: bytes) -> None:
    check(data)


def main(argv: list[str]) -> int:
    if atheris is None:
        print("atheris is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    for seed in SEEDS:  # the seeds must pass before fuzzing starts
        check(seed)
    instrument()
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = tempfile.mkdtemp(prefix="ghostgate-parsers-")
        for number, seed in enumerate(SEEDS):
            Path(corpus, f"seed-{number}").write_bytes(seed)
        argv = [*argv, corpus]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


def instrument() -> None:
    """Coverage feedback from the two parser modules only: instrumenting every
    import (atheris.instrument_imports) would slow each run down for code the
    parsers never reach."""
    for module in (ollama_request, openai_request):
        for value in vars(module).values():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                atheris.instrument_func(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
