from __future__ import annotations

import pytest

from gateway.completion.fim import (
    CHARS_PER_TOKEN,
    CODEGEMMA,
    CODELLAMA,
    DEEPSEEK,
    FAMILIES,
    QWEN,
    STARCODER,
    FimFamily,
    custom_family,
    detect_family,
    family_by_name,
    model_key,
    plan_fim,
    template_supports_suffix,
    trim_context,
)

# Ollama templates, abridged from the library's Modelfiles.
QWEN_TEMPLATE = (
    "{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>\n"
    "{{- else if .Messages }}<|im_start|>system ...{{ end }}"
)
CODELLAMA_TEMPLATE = (
    "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n"
    "{{- else }}{{ .Prompt }}{{- end }}"
)
PLAIN_TEMPLATE = "{{ .Prompt }}"
DEEPSEEK_CHAT_TEMPLATE = "{{ .System }}\n### Instruction:\n{{ .Prompt }}\n### Response:\n<|EOT|>"


# --- prompt formats ---------------------------------------------------------


def test_deepseek_prompt_has_the_exact_code_points() -> None:
    prompt = DEEPSEEK.build("def f(", "):")
    expected = (
        "<\uff5cfim\u2581begin\uff5c>def f(<\uff5cfim\u2581hole\uff5c>):<\uff5cfim\u2581end\uff5c>"
    )
    assert prompt == expected
    assert "|" not in prompt and "_" not in prompt  # no ASCII look-alikes
    assert [hex(ord(c)) for c in prompt[:2]] == ["0x3c", "0xff5c"]
    assert hex(ord(prompt[5])) == "0x2581"


def test_deepseek_stops_include_its_end_tokens() -> None:
    assert "<\uff5cend\u2581of\u2581sentence\uff5c>" in DEEPSEEK.stop
    assert "<|EOT|>" in DEEPSEEK.stop
    assert "<\uff5cfim\u2581begin\uff5c>" in DEEPSEEK.stop


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (STARCODER, "<fim_prefix>PRE<fim_suffix>SUF<fim_middle>"),
        (CODELLAMA, "<PRE> PRE <SUF>SUF <MID>"),
        (QWEN, "<|fim_prefix|>PRE<|fim_suffix|>SUF<|fim_middle|>"),
        (CODEGEMMA, "<|fim_prefix|>PRE<|fim_suffix|>SUF<|fim_middle|>"),
    ],
)
def test_family_prompt_strings(family: FimFamily, expected: str) -> None:
    assert family.build("PRE", "SUF") == expected


@pytest.mark.parametrize(
    ("family", "tokens"),
    [
        (STARCODER, ["<|endoftext|>", "<file_sep>", "<fim_prefix>"]),
        (CODELLAMA, ["<EOT>", "<PRE>", "<SUF>", "<MID>"]),
        (QWEN, ["<|endoftext|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|im_end|>"]),
        (CODEGEMMA, ["<|file_separator|>", "<end_of_turn>", "<eos>", "<|fim_prefix|>"]),
    ],
)
def test_family_stop_tokens(family: FimFamily, tokens: list[str]) -> None:
    for token in tokens:
        assert token in family.stop
    assert "<|im_end|>" not in CODEGEMMA.stop  # same prompt as Qwen, different stops


def test_build_is_one_pass_so_code_braces_and_placeholders_survive() -> None:
    code = 'f"{prefix}" and {suffix} {x}'
    assert STARCODER.build(code, "}") == f"<fim_prefix>{code}<fim_suffix>}}<fim_middle>"


def test_custom_family() -> None:
    family = custom_family(
        "[SUFFIX]{suffix}[PREFIX]{prefix}", ["[PREFIX]", "", "[SUFFIX]"], "codestral"
    )
    assert family.build("a = ", "\nb") == "[SUFFIX]\nb[PREFIX]a = "
    assert family.stop == ("[PREFIX]", "[SUFFIX]")
    assert family.name == "codestral"


def test_custom_family_needs_both_placeholders() -> None:
    with pytest.raises(ValueError, match="suffix"):
        custom_family("<p>{prefix}<m>", [])


def test_family_by_name() -> None:
    assert family_by_name("deepseek") is DEEPSEEK
    assert family_by_name("starcoder2") is STARCODER
    assert family_by_name("qwen2.5-coder") is QWEN
    with pytest.raises(ValueError, match="unknown FIM family"):
        family_by_name("gpt")


# --- detection -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("deepseek-coder:6.7b-base", DEEPSEEK),
        ("deepseek-coder-v2:16b-lite-base-q4_0", DEEPSEEK),
        ("registry.ollama.ai/library/deepseek-coder:1.3b", DEEPSEEK),
        ("hf.co/bartowski/DeepSeek-Coder-V2-Lite-Base-GGUF:Q4_K_M", DEEPSEEK),
        ("starcoder2:3b", STARCODER),
        ("starcoder:1b", STARCODER),
        ("stable-code:3b-code", STARCODER),
        ("codellama:7b-code", CODELLAMA),
        ("library/codellama:13b", CODELLAMA),
        ("qwen2.5-coder:1.5b-base", QWEN),
        ("hf.co/Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:latest", QWEN),
        ("codegemma:2b", CODEGEMMA),
    ],
)
def test_detect_from_name(model: str, family: FimFamily) -> None:
    assert detect_family(model) is family


@pytest.mark.parametrize("model", ["llama3.2:3b", "deepseek-r1:7b", "qwen2.5:7b", "mistral"])
def test_non_fim_models_are_unknown(model: str) -> None:
    assert detect_family(model) is None


@pytest.mark.parametrize(
    ("template", "family"),
    [
        (QWEN_TEMPLATE, QWEN),
        (CODELLAMA_TEMPLATE, CODELLAMA),
        ("<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>", STARCODER),
        (DEEPSEEK.build("{{ .Prompt }}", "{{ .Suffix }}"), DEEPSEEK),
        (
            "{{ if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>"
            "{{ else }}<start_of_turn>user\n{{ .Prompt }}<end_of_turn>{{ end }}",
            CODEGEMMA,
        ),
        (PLAIN_TEMPLATE, None),
        (None, None),
    ],
)
def test_detect_from_template(template: str | None, family: FimFamily | None) -> None:
    assert detect_family("my-finetune:latest", template) is family


def test_name_wins_over_template_and_override_wins_over_both() -> None:
    assert detect_family("codellama:7b-code", QWEN_TEMPLATE) is CODELLAMA
    overrides = {"codellama:7b-code": STARCODER, "mine": DEEPSEEK}
    assert detect_family("codellama:7b-code", QWEN_TEMPLATE, overrides) is STARCODER
    assert detect_family("registry.ollama.ai/library/mine:latest", None, overrides) is DEEPSEEK
    assert detect_family("mine:7b", None, overrides) is None


def test_model_key() -> None:
    assert model_key("registry.ollama.ai/library/Mine:latest") == "mine"
    assert model_key("hf.co/a/b:Q4") == "hf.co/a/b:q4"


def test_template_supports_suffix() -> None:
    assert template_supports_suffix(QWEN_TEMPLATE)
    assert template_supports_suffix(CODELLAMA_TEMPLATE)
    assert template_supports_suffix("{{ if $.Suffix }}x{{ end }}")
    assert not template_supports_suffix(PLAIN_TEMPLATE)
    assert not template_supports_suffix("Suffix: .Suffix outside any action")
    assert not template_supports_suffix("{{ .SuffixText }}")
    assert not template_supports_suffix("")
    assert not template_supports_suffix(None)


def test_families_table_is_complete() -> None:
    assert set(FAMILIES) == {"deepseek", "starcoder", "codellama", "qwen", "codegemma"}


# --- plans -------------------------------------------------------------------


def test_plan_suffix_mode_lets_ollama_build_the_prompt() -> None:
    plan = plan_fim("qwen2.5-coder:1.5b-base", "def f(", "):", QWEN_TEMPLATE, 4096)
    assert plan.mode == "suffix"
    assert (plan.prompt, plan.suffix, plan.raw) == ("def f(", "):", False)
    assert plan.stop == QWEN.stop and plan.family is QWEN


def test_plan_suffix_mode_for_an_unknown_family() -> None:
    plan = plan_fim(
        "my-model", "a", "b", "{{ if .Suffix }}{{ .Prompt }}|{{ .Suffix }}{{ end }}", 4096
    )
    assert (plan.mode, plan.prompt, plan.suffix, plan.stop) == ("suffix", "a", "b", ())


def test_plan_raw_mode_builds_the_family_prompt() -> None:
    plan = plan_fim("deepseek-coder:6.7b-base", "x = ", "\nprint(x)", PLAIN_TEMPLATE, 4096)
    assert plan.mode == "raw" and plan.raw and plan.suffix is None
    assert plan.prompt == DEEPSEEK.build("x = ", "\nprint(x)")
    assert plan.stop == DEEPSEEK.stop


def test_plan_raw_mode_when_the_template_is_a_chat_template() -> None:
    plan = plan_fim("deepseek-coder:6.7b-instruct", "a", "b", DEEPSEEK_CHAT_TEMPLATE, 4096)
    assert (plan.mode, plan.raw, plan.prompt) == ("raw", True, DEEPSEEK.build("a", "b"))


def test_plan_raw_mode_when_the_template_is_unknown() -> None:
    plan = plan_fim("starcoder2:3b", "a", "b", None, 4096)
    assert (plan.mode, plan.prompt) == ("raw", "<fim_prefix>a<fim_suffix>b<fim_middle>")


def test_plan_override_family_builds_a_custom_prompt() -> None:
    family = custom_family("<s>{prefix}<h>{suffix}<e>", ["<end>"])
    plan = plan_fim("whatever:1b", "a", "b", PLAIN_TEMPLATE, 4096, family=family)
    assert (plan.mode, plan.prompt, plan.raw, plan.stop) == ("raw", "<s>a<h>b<e>", True, ("<end>",))


def test_plan_plain_mode_without_a_suffix() -> None:
    plan = plan_fim("deepseek-coder:6.7b-base", "import os\n", "", PLAIN_TEMPLATE, 4096)
    assert (plan.mode, plan.prompt, plan.suffix, plan.raw) == ("plain", "import os\n", None, False)
    assert plan.stop == DEEPSEEK.stop


def test_plan_prefix_only_for_an_unknown_family_with_a_suffix() -> None:
    plan = plan_fim("llama3.2:3b", "def f(", "):\n    pass\n", PLAIN_TEMPLATE, 4096)
    assert (plan.mode, plan.prompt, plan.suffix, plan.raw, plan.stop) == (
        "prefix_only",
        "def f(",
        None,
        False,
        (),
    )
    assert plan.context.suffix == "" and plan.context.suffix_cut == len("):\n    pass\n")


def test_plan_trims_to_the_budget_and_reserves_num_predict() -> None:
    prefix = "".join(f"line {i}\n" for i in range(2000))
    suffix = "".join(f"after {i}\n" for i in range(2000))
    plan = plan_fim("starcoder2:3b", prefix, suffix, None, 1024, num_predict=256)
    markup_tokens = -(-len(STARCODER.build("", "")) // CHARS_PER_TOKEN)
    room = (1024 - 256 - markup_tokens) * CHARS_PER_TOKEN
    kept = plan.context
    assert len(kept.prefix) + len(kept.suffix) <= room
    assert len(plan.prompt) <= room + len(STARCODER.build("", ""))
    assert prefix.endswith(kept.prefix) and suffix.startswith(kept.suffix)
    assert kept.prefix_cut == len(prefix) - len(kept.prefix) > 0
    assert kept.suffix_cut > 0


# --- trimming ------------------------------------------------------------------


def test_trim_keeps_everything_that_fits() -> None:
    kept = trim_context("abc\n", "def\n", 100)
    assert (kept.prefix, kept.suffix, kept.prefix_cut, kept.suffix_cut) == ("abc\n", "def\n", 0, 0)


def test_trim_keeps_the_text_nearest_the_cursor_at_line_boundaries() -> None:
    prefix = "".join(f"p{i:03}\n" for i in range(100)) + "    return "
    suffix = "\n" + "".join(f"s{i:03}\n" for i in range(100))
    kept = trim_context(prefix, suffix, 40)  # 120 characters
    assert kept.prefix.endswith("p099\n    return ")
    assert kept.suffix.startswith("\ns000\n")
    assert kept.prefix.startswith("p") and kept.suffix.endswith("\n")  # whole lines
    assert len(kept.prefix) <= 90 and len(kept.suffix) <= 30  # the 3/4 split
    assert len(kept.prefix) + len(kept.suffix) <= 120


def test_unused_share_flows_to_the_other_side() -> None:
    long = "x" * 600
    kept = trim_context(long, "", 40)
    assert len(kept.prefix) == 120  # the suffix's quarter went to the prefix
    kept = trim_context("a", long, 40)
    assert kept.prefix == "a" and len(kept.suffix) == 119


def test_a_window_that_starts_a_line_keeps_that_line() -> None:
    kept = trim_context("x = 1\n" * 100, "", 40)
    assert kept.prefix == "x = 1\n" * 20


def test_trim_cuts_mid_line_when_there_is_no_line_boundary() -> None:
    kept = trim_context("y" * 1000, "z" * 1000, 10)
    assert kept.prefix == "y" * 22 and kept.suffix == "z" * 8


def test_trim_does_not_strand_combining_marks() -> None:
    # "e" + COMBINING ACUTE ACCENT: a cut must not keep the accent without its letter.
    prefix = "e\u0301" * 50
    kept = trim_context(prefix, "", 11)  # 33 characters: an odd cut lands on an accent
    assert not kept.prefix.startswith("\u0301")
    suffix = "e\u0301" * 50
    kept = trim_context("", suffix, 11)
    assert kept.suffix.endswith("\u0301") and len(kept.suffix) % 2 == 0


def test_trim_with_no_budget_keeps_nothing() -> None:
    kept = trim_context("abc", "def", -5)
    assert (kept.prefix, kept.suffix, kept.prefix_cut, kept.suffix_cut) == ("", "", 3, 3)
