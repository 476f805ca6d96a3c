"""Every editor plugin's dialect end to end: OpenAI, Copilot, Ollama (Continue's
sequence), and for each model family the exact FIM prompt that reaches the backend."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import ollama
import openai
import pytest

from gateway.completion.fim import CODEGEMMA, CODELLAMA, DEEPSEEK, QWEN, STARCODER, FimFamily
from tests.e2e import Region, region

pytestmark = pytest.mark.e2e

PREFIX = "def area(r):\n    "
SUFFIX = "\n\nprint(area(2))\n"
FAMILIES: dict[str, FimFamily] = {
    "deepseek-coder:6.7b-base": DEEPSEEK,
    "starcoder2:3b": STARCODER,
    "codellama:7b-code": CODELLAMA,
    "qwen2.5-coder:1.5b-base": QWEN,
    "codegemma:2b": CODEGEMMA,
}


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    # Every model with a plain template (no .Suffix) except starcoder2:3b,
    # whose template has one: both FIM paths are exercised.
    models = [m for m in FAMILIES if m != "starcoder2:3b"] + ["starcoder2:3b:fim"]
    args = ["--load-seconds", "0", "--models", *models]
    with region(tmp_path_factory.mktemp("dialects"), sim_args=args) as r:
        yield r


def last_request(reg: Region) -> dict[str, Any]:
    with urllib.request.urlopen(reg.sims[0].url + "/sim/requests", timeout=5) as response:
        requests: list[dict[str, Any]] = json.loads(response.read())["requests"]
    return requests[-1]


def openai_client(reg: Region) -> openai.OpenAI:
    return openai.OpenAI(base_url=reg.url + "/v1", api_key=reg.token(), max_retries=0)


@pytest.mark.parametrize("model", [m for m in FAMILIES if m != "starcoder2:3b"])
def test_each_family_gets_its_exact_fim_prompt(reg: Region, model: str) -> None:
    with openai_client(reg) as client:
        result = client.completions.create(
            model=model, prompt=PREFIX, suffix=SUFFIX, max_tokens=12, temperature=0
        )
    sent = last_request(reg)
    assert sent["raw"] is True and not sent["suffix"]
    assert sent["prompt"] == FAMILIES[model].build(PREFIX, SUFFIX)
    assert set(FAMILIES[model].stop) <= set(sent["options"]["stop"])
    text = result.choices[0].text
    assert text and not any(token in text for token in FAMILIES[model].stop)


def test_deepseek_tokens_are_the_exact_code_points(reg: Region) -> None:
    with openai_client(reg) as client:
        client.completions.create(
            model="deepseek-coder:6.7b-base", prompt="a", suffix="b", max_tokens=2
        )
    assert last_request(reg)["prompt"] == (
        "<\uff5cfim\u2581begin\uff5c>a<\uff5cfim\u2581hole\uff5c>b<\uff5cfim\u2581end\uff5c>"
    )


def test_template_with_suffix_lets_ollama_build_the_prompt(reg: Region) -> None:
    with openai_client(reg) as client:
        streamed = list(
            client.completions.create(
                model="starcoder2:3b", prompt=PREFIX, suffix=SUFFIX, max_tokens=10, stream=True
            )
        )
    sent = last_request(reg)
    assert sent["raw"] is False and sent["suffix"] == SUFFIX
    assert sent["prompt"] == STARCODER.build(PREFIX, SUFFIX)  # the worker rendered .Suffix
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].text for c in streamed)


def test_openai_chat_streamed_and_not(reg: Region) -> None:
    messages: Any = [{"role": "user", "content": "sort a list"}]
    with openai_client(reg) as client:
        whole = client.chat.completions.create(
            model="codellama:7b-code", messages=messages, max_tokens=8
        )
        assert whole.choices[0].message.content and whole.usage and whole.usage.completion_tokens
        chunks = list(
            client.chat.completions.create(
                model="codellama:7b-code",
                messages=messages,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
        assert {m.id for m in client.models.list()} == set(FAMILIES)


def test_openai_errors_in_openai_shape(reg: Region) -> None:
    with openai_client(reg) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            client.completions.create(model="gpt-9", prompt="x")
        assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
        with pytest.raises(openai.UnprocessableEntityError) as wrong:
            client.completions.create(model="codegemma:2b", prompt="x", max_tokens="many")  # type: ignore[arg-type]
        assert "max_tokens" in wrong.value.body["message"]  # type: ignore[index]
    with openai.OpenAI(base_url=reg.url + "/v1", api_key="forged", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as denied:
            bad.models.list()
        assert denied.value.body["type"] == "authentication_error"  # type: ignore[index]


def copilot_request(reg: Region, body: dict[str, Any], engine: str = "copilot-codex") -> bytes:
    # Headers as the Copilot extension sends them (VS Code, ghost-text intent).
    headers = {
        "Authorization": f"Bearer {reg.token()}",
        "Content-Type": "application/json",
        "Openai-Organization": "github-copilot",
        "OpenAI-Intent": "copilot-ghost",
        "X-Request-Id": "3f1c2e2a-0d47-4a0b-8a4c-7d0e9d0c1a11",
        "VScode-SessionId": "d4b2c8e0-1a2b-4c3d-9e8f-0a1b2c3d4e5f1700000000000",
        "VScode-MachineId": "0" * 64,
        "Editor-Version": "vscode/1.95.0",
        "Editor-Plugin-Version": "copilot/1.245.0",
        "Copilot-Integration-Id": "vscode-chat",
        "User-Agent": "GithubCopilot/1.245.0",
    }
    request = urllib.request.Request(
        f"{reg.url}/v1/engines/{engine}/completions",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Request-Id"] == headers["X-Request-Id"]
        data: bytes = response.read()
        return data


def copilot_body(**changes: Any) -> dict[str, Any]:
    body = {
        "prompt": "# Path: geometry.py\nimport math\n\ndef area(r):\n    ",
        "suffix": "\n\nprint(area(2))\n",
        "max_tokens": 60,
        "temperature": 0,
        "top_p": 1,
        "n": 1,
        "stop": ["\n\n\n"],
        "stream": True,
        "nwo": "acme/geometry",
        "extra": {
            "language": "python",
            "next_indent": 0,
            "trim_by_indentation": True,
            "prompt_tokens": 14,
            "suffix_tokens": 6,
        },
    }
    body.update(changes)
    return body


def sse_events(raw: bytes) -> list[Any]:
    events = [line[len(b"data: ") :] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_copilot_replay_streams_text_completion_chunks(reg: Region) -> None:
    events = sse_events(copilot_request(reg, copilot_body()))
    assert all(e["object"] == "text_completion" for e in events)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(e["choices"][0]["text"] for e in events)
    # trim_by_indentation: nothing dedented below the function body survives.
    assert text and all(not line or line.startswith(" ") for line in text.split("\n")[1:])
    sent = last_request(reg)
    # The engine name is Copilot's; the region's default completion model served it
    # with its own FIM format (codegemma sorts first among the FIM models served).
    assert sent["model"] == "codegemma:2b" and sent["raw"] is True
    assert sent["prompt"] == CODEGEMMA.build(copilot_body()["prompt"], copilot_body()["suffix"])


def test_copilot_single_line_and_n(reg: Region) -> None:
    events = sse_events(copilot_request(reg, copilot_body(stop=["\n"], n=2, temperature=0.8)))
    by_choice: dict[int, str] = {}
    for event in events:
        for choice in event["choices"]:
            by_choice[choice["index"]] = by_choice.get(choice["index"], "") + choice["text"]
    assert set(by_choice) == {0, 1}
    assert all("\n" not in text for text in by_choice.values())


def test_continue_autocomplete_sequence(reg: Region) -> None:
    """Continue: /api/show with {"name"}; .Suffix in the template decides between
    /api/generate with `suffix` and a prompt it templates itself with `raw`."""
    with ollama.Client(host=reg.url, headers=reg.auth()) as client:
        fim = client.show("starcoder2:3b")
        assert ".Suffix" in (fim.template or "")
        parts = list(
            client.generate(
                model="starcoder2:3b",
                prompt=PREFIX,
                suffix=SUFFIX,
                stream=True,
                keep_alive=1800,
                options={"num_predict": 16, "temperature": 0.01, "stop": ["<fim_prefix>", "\n\n"]},
            )
        )
        assert parts[-1].done and last_request(reg)["suffix"] == SUFFIX
        plain = client.show("deepseek-coder:6.7b-base")
        assert ".Suffix" not in (plain.template or "")
        raw_prompt = DEEPSEEK.build(PREFIX, SUFFIX)
        parts = list(
            client.generate(
                model="deepseek-coder:6.7b-base",
                prompt=raw_prompt,
                raw=True,
                stream=True,
                options={"num_predict": 16},
            )
        )
        assert parts[-1].done and last_request(reg)["prompt"] == raw_prompt


def test_ollama_suffix_to_a_model_without_insert_is_rescued(reg: Region) -> None:
    """Ollama itself would answer 400 "does not support insert"; the gateway sends
    the model's own FIM prompt instead."""
    with ollama.Client(host=reg.url, headers=reg.auth()) as client:
        result = client.generate(
            model="qwen2.5-coder:1.5b-base",
            prompt=PREFIX,
            suffix=SUFFIX,
            options={"num_predict": 8},
        )
    assert result.done and result.response
    sent = last_request(reg)
    assert sent["raw"] is True and sent["prompt"] == QWEN.build(PREFIX, SUFFIX)


def test_unknown_engine_with_no_models_is_a_clean_error(reg: Region) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        copilot_request(reg, copilot_body(prompt=5))
    with info.value as error:
        assert error.code == 422
        assert json.loads(error.read())["error"]["message"] == "prompt must be a string"


def test_prompt_already_in_fim_tokens_is_sent_raw(reg: Region) -> None:
    """Continue's and llama.vscode's OpenAI modes send the FIM prompt themselves."""
    prompt = QWEN.build(PREFIX, SUFFIX)
    with openai_client(reg) as client:
        result = client.completions.create(
            model="qwen2.5-coder:1.5b-base", prompt=prompt, max_tokens=8, stream=False
        )
    sent = last_request(reg)
    assert sent["raw"] is True and sent["prompt"] == prompt and result.choices[0].text
