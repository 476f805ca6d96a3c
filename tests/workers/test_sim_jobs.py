"""Request parsing, template rendering and the model catalog of the simulated worker."""

from __future__ import annotations

import pytest

from workers.sim.catalog import DEFAULT_MODELS, fim_template, model_from_arg, normalize_model
from workers.sim.errors import BadRequest, ModelNotFound, SimError
from workers.sim.jobs import (
    parse_body,
    parse_chat,
    parse_generate,
    parse_keep_alive,
    render_template,
)

MODELS = {m.name: m for m in DEFAULT_MODELS}
FIM = "starcoder2:3b"
PLAIN = "deepseek-coder:6.7b-base"


def test_default_models_match_the_ollama_library() -> None:
    assert MODELS[PLAIN].template == "{{ .Prompt }}"
    assert not MODELS[PLAIN].supports_insert
    assert MODELS[FIM].template == (
        "{{- if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"
        "{{- else }}{{ .Prompt }}{{- end }}"
    )
    assert MODELS[FIM].capabilities == ["completion", "insert"]


def test_models_from_the_command_line() -> None:
    spec = model_from_arg("qwen2.5-coder:1.5b:fim")
    assert spec.name == "qwen2.5-coder:1.5b" and spec.supports_insert
    assert "<|fim_prefix|>" in spec.template and spec.parameter_size == "1.5B"
    plain = model_from_arg("codellama")
    assert plain.name == "codellama:latest" and not plain.supports_insert
    assert "<PRE> {{ .Prompt }} <SUF>" in fim_template("codellama:7b-code")
    assert normalize_model("registry.ollama.ai/library/starcoder2:3b") == FIM


def test_suffix_on_a_model_without_suffix_template_is_refused_like_ollama() -> None:
    body = {"model": PLAIN, "prompt": "def f(", "suffix": "\n"}
    with pytest.raises(BadRequest) as info:
        parse_generate(body, MODELS)
    assert info.value.status == 400
    assert info.value.message == f"registry.ollama.ai/library/{PLAIN} does not support insert"


def test_raw_ignores_the_suffix_and_sends_the_prompt_verbatim() -> None:
    job = parse_generate({"model": PLAIN, "prompt": "<PRE> a", "suffix": "b", "raw": True}, MODELS)
    assert job.prompt == "<PRE> a" and job.raw


def test_a_fim_template_renders_prompt_and_suffix() -> None:
    job = parse_generate({"model": FIM, "prompt": "def f(", "suffix": ")\n"}, MODELS)
    assert job.prompt == "<fim_prefix>def f(<fim_suffix>)\n<fim_middle>"
    assert parse_generate({"model": FIM, "prompt": "def f("}, MODELS).prompt == "def f("


def test_generate_fields_and_options() -> None:
    job = parse_generate(
        {
            "model": "starcoder2:3b",
            "prompt": "x",
            "stream": False,
            "keep_alive": "1m30s",
            "images": ["ignored"],
            "options": {"num_predict": 12.0, "stop": "\n", "num_ctx": 2048, "temperature": 0.2},
        },
        MODELS,
    )
    assert (job.num_predict, job.stops, job.num_ctx, job.keep_alive) == (12, ("\n",), 2048, 90.0)
    assert job.stream is False and job.route == "generate" and not job.preload
    assert parse_generate({"model": FIM, "prompt": ""}, MODELS).preload


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        ({}, BadRequest, "model is required"),
        ({"model": 3}, BadRequest, "model must be a string"),
        ({"model": "nope:1b"}, ModelNotFound, 'model "nope:1b" not found, try pulling it first'),
        ({"model": FIM, "options": {"num_predict": "x"}}, BadRequest, "num_predict"),
        ({"model": FIM, "options": {"num_predict": 1.5}}, BadRequest, "num_predict"),
        ({"model": FIM, "options": {"stop": [1]}}, BadRequest, "stop"),
        ({"model": FIM, "raw": True, "system": "s"}, BadRequest, "raw mode"),
        ({"model": FIM, "stream": "yes"}, BadRequest, "stream"),
        ({"model": FIM, "keep_alive": "soon"}, BadRequest, "invalid duration"),
    ],
)
def test_bad_generate_bodies(body: dict[str, object], error: type[SimError], fragment: str) -> None:
    with pytest.raises(error) as info:
        parse_generate(body, MODELS)
    assert fragment in info.value.message


def test_legacy_name_field_and_normalized_names() -> None:
    assert parse_generate({"name": FIM, "prompt": "x"}, MODELS).spec.name == FIM
    job = parse_generate({"model": "library/starcoder2:3b", "prompt": "x"}, MODELS)
    assert job.model == "library/starcoder2:3b" and job.spec.name == FIM


def test_chat_renders_the_conversation() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "sort"}]
    job = parse_chat({"model": PLAIN, "messages": messages, "tools": []}, MODELS)
    assert job.route == "chat" and "be brief" in job.prompt and "sort" in job.prompt
    assert parse_chat({"model": PLAIN, "messages": []}, MODELS).preload
    with pytest.raises(BadRequest):
        parse_chat({"model": PLAIN, "messages": [{"content": "x"}]}, MODELS)


def test_parse_body() -> None:
    assert parse_body(b'{"a": 1}') == {"a": 1}
    for raw, fragment in [(b"", "missing request body"), (b"{", "invalid JSON"), (b"[]", "object")]:
        with pytest.raises(BadRequest) as info:
            parse_body(raw)
        assert fragment in info.value.message


def test_template_subset() -> None:
    values = {"Prompt": "P", "Suffix": "", "System": "S"}
    assert render_template("{{ .System }} {{ .Prompt }}", values) == "S P"
    branches = "{{ if .Suffix }}A{{ else if .System }}B{{ else }}C{{ end }}"
    assert render_template(branches, values) == "B"
    assert render_template("x  {{- .Prompt -}}  y", values) == "xPy"
    assert render_template("{{ range .Messages }}m{{ end }}!", values) == "!"
    with pytest.raises(BadRequest):
        render_template("{{ end }}", values)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), (0, 0.0), (30, 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("-1", -1.0),
     ("-5m", -1.0), (-3, -1.0), ("0", 0.0), ("250ms", 0.25)],
)  # fmt: skip
def test_keep_alive_like_ollama(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds
