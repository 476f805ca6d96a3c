from __future__ import annotations

import json

import pytest

from gateway.completion.models import default_model, fim_overrides, resolve_model
from gateway.dialects.openai.request import (
    DEFAULT_MAX_TOKENS,
    chat_body,
    ollama_options,
    parse_chat_completion,
    parse_completion,
)
from gateway.dialects.openai.stream import ChoiceState, Encoder
from gateway.errors import BadRequest, ModelNotFound, Unprocessable
from gateway.settings import FimOverride, ModelSettings


def test_completion_fields_and_defaults() -> None:
    req = parse_completion(
        json.dumps(
            {
                "model": "starcoder2:3b",
                "prompt": ["def f():"],
                "suffix": "\n",
                "max_tokens": 32,
                "stop": "\n\n",
                "temperature": 0.2,
                "n": 2,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
    )
    assert (req.model, req.prompt, req.suffix, req.max_tokens, req.n) == (
        "starcoder2:3b",
        "def f():",
        "\n",
        32,
        2,
    )
    assert req.stop == ("\n\n",) and req.include_usage and req.options == {"temperature": 0.2}
    bare = parse_completion(b'{"model": "m", "prompt": "x"}')
    assert bare.max_tokens == DEFAULT_MAX_TOKENS and not bare.stream and bare.n == 1
    assert (
        parse_completion(b'{"prompt": "x"}', model="copilot-codex").model == "copilot-codex:latest"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "prompt": 3},
        {"model": "m", "prompt": ["a", "b"]},
        {"model": "m", "max_tokens": 0},
        {"model": "m", "max_tokens": 1.5},
        {"model": "m", "n": 9},
        {"model": "m", "stop": [1]},
        {"model": "m", "temperature": "hot"},
        {"model": "m", "stream": "yes"},
        {"model": "m", "extra": []},
    ],
)
def test_completion_wrong_types_are_422(body: dict[str, object]) -> None:
    with pytest.raises(Unprocessable):
        parse_completion(json.dumps(body).encode())


def test_completion_missing_model_is_400() -> None:
    with pytest.raises(BadRequest):
        parse_completion(b'{"prompt": "x"}')


def test_chat_request_becomes_an_ollama_chat() -> None:
    req = parse_chat_completion(
        json.dumps(
            {
                "model": "m",
                "max_completion_tokens": 5,
                "stop": ["END"],
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                    {"role": "user", "content": "hi"},
                ],
            }
        ).encode()
    )
    body = chat_body(req)
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["stream"] is True and body["options"] == {"num_predict": 5, "stop": ["END"]}
    with pytest.raises(Unprocessable):
        parse_chat_completion(b'{"model": "m", "messages": []}')
    assert ollama_options({"seed": 1}, 9, ()) == {"seed": 1, "num_predict": 9}


def test_model_resolution_aliases_defaults_and_strictness() -> None:
    served = ["codellama:7b-code", "llama3:8b", "starcoder2:3b"]
    table = ModelSettings(aliases={"fast": "starcoder2:3b"})
    assert resolve_model("fast", "completion", table, served) == "starcoder2:3b"
    assert resolve_model("llama3:8b", "chat", table, served) == "llama3:8b"
    with pytest.raises(ModelNotFound):
        resolve_model("gpt-4", "completion", table, served)
    # Copilot's engine names are not ours: the default completion model serves them.
    assert resolve_model("copilot-codex", "completion", table, served, strict=False) == (
        "codellama:7b-code"
    )
    assert default_model("completion", ModelSettings(completion="starcoder2:3b"), served) == (
        "starcoder2:3b:latest".removesuffix(":latest")
    )
    assert default_model("chat", table, []) is None


def test_fim_overrides_from_settings() -> None:
    overrides = fim_overrides(
        ModelSettings(
            fim={
                "my-coder:7b": FimOverride(family="starcoder"),
                "odd:1b": FimOverride(template="<A>{prefix}<B>{suffix}<C>", stop=("<END>",)),
            }
        )
    )
    assert overrides["my-coder:7b"].build("p", "s") == "<fim_prefix>p<fim_suffix>s<fim_middle>"
    assert overrides["odd:1b"].build("p", "s") == "<A>p<B>s<C>" and overrides["odd:1b"].stop


def test_encoder_events_and_bodies() -> None:
    encoder = Encoder(model="m", chat=False, include_usage=True, id="cmpl-1", created=7)
    choice = ChoiceState(0)
    assert choice.on_line({"response": "ab", "done": False}, chat=False) == "ab"
    choice.on_line(
        {
            "response": "",
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 3,
            "eval_count": 2,
        },
        chat=False,
    )
    assert choice.finish_reason == "length"
    event = json.loads(encoder.chunk(0, "ab", None)[len(b"data: ") :])
    assert event == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 7,
        "model": "m",
        "choices": [{"text": "ab", "index": 0, "logprobs": None, "finish_reason": None}],
    }
    tail = encoder.tail([choice])
    assert tail.endswith(b"data: [DONE]\n\n") and b'"total_tokens":5' in tail
    body = encoder.body([choice])
    assert body["choices"][0]["text"] == "ab" and body["usage"]["prompt_tokens"] == 3
    errored = ChoiceState(0)
    errored.on_line({"error": "model crashed"}, chat=True)
    assert errored.finish_reason == "error" and errored.error == "model crashed"
