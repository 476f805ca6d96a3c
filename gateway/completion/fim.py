"""Fill-in-the-middle: which prompt format a model speaks, and what to send Ollama.

Pure decisions, no I/O: a model name, the cursor's prefix and suffix, the model's
Ollama template (from `/api/show`, when known) and a context budget go in; a
frozen `FimPlan` comes out, saying whether to let Ollama build the prompt
(`suffix`), build it here and send it `raw`, send the prefix alone (`plain`,
`prefix_only`), which stop sequences to add, and how much context was kept.

Each family's tokens were checked against the models' documentation and the editor
plugins that use them (sources at each entry). DeepSeek's look-alike characters are
built from escapes: U+FF5C FULLWIDTH VERTICAL LINE and U+2581 LOWER ONE EIGHTH BLOCK.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

# Code tokenizers average ~3.5-4 characters per token; assuming 3 over-counts, so a
# trimmed prompt stays inside the real window rather than being cut by Ollama.
CHARS_PER_TOKEN = 3
# What precedes the cursor predicts the completion best: it gets 3/4 of the budget.
PREFIX_SHARE = 0.75

Mode = Literal["suffix", "raw", "plain", "prefix_only"]

_BAR = "\uff5c"  # FULLWIDTH VERTICAL LINE
_LOW = "\u2581"  # LOWER ONE EIGHTH BLOCK (sentencepiece's space)


def _ds(name: str) -> str:  # "fim begin" -> <｜fim▁begin｜>
    return f"<{_BAR}{name.replace(' ', _LOW)}{_BAR}>"


@dataclass(frozen=True, slots=True)
class FimFamily:
    """A FIM prompt format: a template with `{prefix}` and `{suffix}`, and its stops.

    `stop` goes to Ollama's stop sequences and is cut from output: the family's
    end-of-text tokens and FIM markers (a model emitting one starts a new document).
    """

    name: str
    template: str
    stop: tuple[str, ...]

    def build(self, prefix: str, suffix: str) -> str:
        """The raw prompt. One pass, so braces or placeholders in the code stay as typed."""
        values = {"prefix": prefix, "suffix": suffix}
        return _PLACEHOLDER.sub(lambda m: values[m[1]], self.template)


_PLACEHOLDER = re.compile(r"\{(prefix|suffix)\}")

# Continue `core/autocomplete/templating/AutocompleteTemplate.ts` (deepseekFimTemplate,
# citing huggingface.co/deepseek-ai/deepseek-coder-1.3b-base) and Twinny's STOP_DEEPSEEK
# give the markers and `<｜end▁of▁sentence｜>` (the base models' EOS, also
# DeepSeek-Coder-V2's). `<|EOT|>`, with ASCII bars, is the EOS of the -instruct models'
# tokenizer_config.json.
DEEPSEEK = FimFamily(
    "deepseek",
    f"{_ds('fim begin')}{{prefix}}{_ds('fim hole')}{{suffix}}{_ds('fim end')}",
    (_ds("fim begin"), _ds("fim hole"), _ds("fim end"), _ds("end of sentence"), "<|EOT|>"),
)
# StarCoder/StarCoder2 (arXiv 2402.19173 s5.1), stable-code and CodeQwen1.5 share these
# tokens: Continue's starcoder2FimTemplate/stableCodeFimTemplate stop on the markers,
# `<file_sep>` and `<|endoftext|>`; Twinny's STOP_STARCODER adds `<repo_name>`.
STARCODER = FimFamily(
    "starcoder",
    "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>", "<file_sep>", "<repo_name>"),
)
# Continue's codeLlamaFimTemplate and Ollama's codellama:code template (spaces as
# written); `<EOT>` is the tokenizer's `eot_token` (Twinny's STOP_LLAMA).
CODELLAMA = FimFamily(
    "codellama", "<PRE> {prefix} <SUF>{suffix} <MID>", ("<PRE>", "<SUF>", "<MID>", "<EOT>")
)
_QWEN_MARKERS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
_QWEN_TEMPLATE = "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
# Qwen2.5-Coder README (file-level FIM) via Continue's qwenCoderFimTemplate.
_QWEN_ENDS = ("<|endoftext|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|im_start|>")
QWEN = FimFamily("qwen", _QWEN_TEMPLATE, (*_QWEN_MARKERS, *_QWEN_ENDS, "<|im_end|>"))
# Same prompt as Qwen (ai.google.dev/gemma/docs/codegemma/prompt-structure lists the
# FIM tokens and `<|file_separator|>`); Gemma's end tokens are `<end_of_turn>` (Gemma
# formatting docs) and `<eos>`, as in Continue's codegemmaFimTemplate. Twinny's
# `<|end_of_turn|>` is not a Gemma token.
CODEGEMMA = FimFamily(
    "codegemma", _QWEN_TEMPLATE, (*_QWEN_MARKERS, "<|file_separator|>", "<end_of_turn>", "<eos>")
)

BUILT_IN = (DEEPSEEK, STARCODER, CODELLAMA, QWEN, CODEGEMMA)
FAMILIES: Mapping[str, FimFamily] = {f.name: f for f in BUILT_IN}

# Model-name patterns, matched on the lowercased name without registry path or tag.
_NAME_PATTERNS: tuple[tuple[re.Pattern[str], FimFamily], ...] = tuple(
    (re.compile(pattern), family)
    for pattern, family in (
        (r"deepseek[-_ ]?coder", DEEPSEEK),
        (r"code[-_ ]?llama", CODELLAMA),
        (r"code[-_ ]?gemma", CODEGEMMA),
        (r"qwen[\d.]*[-_ ]?coder", QWEN),
        (r"star[-_ ]?coder|stable[-_ ]?code|code[-_ ]?qwen", STARCODER),
    )
)
# Template evidence, most specific first: Qwen and CodeGemma share their FIM markers,
# so only Gemma's own turn/file tokens tell CodeGemma apart.
_TEMPLATE_MARKERS: tuple[tuple[tuple[str, ...], FimFamily], ...] = (
    ((_ds("fim hole"),), DEEPSEEK),
    (("<fim_suffix>",), STARCODER),
    (("<SUF>", "<MID>"), CODELLAMA),
    (("<|fim_suffix|>", "<|file_separator|>"), CODEGEMMA),
    (("<|fim_suffix|>", "<end_of_turn>"), CODEGEMMA),
    (("<|fim_suffix|>",), QWEN),
)
# `.Suffix` (or `$.Suffix`) inside a Go template action, which is how Ollama decides
# a model has the "insert" capability (server: `Template.Vars()` contains "suffix").
_SUFFIX_ACTION = re.compile(r"\{\{(?:(?!\}\}).)*?\.Suffix\b", re.DOTALL)


def custom_family(template: str, stop: Iterable[str], name: str = "custom") -> FimFamily:
    """A configured family. Raises `ValueError` unless both placeholders are present."""
    missing = [p for p in ("{prefix}", "{suffix}") if p not in template]
    if missing:
        raise ValueError(f"FIM template {name!r} lacks {' and '.join(missing)}")
    return FimFamily(name, template, tuple(s for s in stop if s))


def family_by_name(name: str) -> FimFamily:
    """A built-in family by name (`starcoder2` and `qwen2.5-coder` are accepted too)."""
    family = FAMILIES.get(name.lower()) or _from_name(name)
    if family is None:
        raise ValueError(f"unknown FIM family {name!r}; known: {', '.join(FAMILIES)}")
    return family


def model_key(model: str) -> str:
    """The name overrides are keyed by: lowercased, no registry path, no `:latest`."""
    key = model.strip().lower().removeprefix("registry.ollama.ai/").removeprefix("library/")
    return key.removesuffix(":latest")


def template_supports_suffix(template: str | None) -> bool:
    """Whether Ollama's Go template uses `.Suffix`, i.e. Ollama can build the FIM prompt."""
    return template is not None and _SUFFIX_ACTION.search(template) is not None


def detect_family(
    model: str, template: str | None = None, overrides: Mapping[str, FimFamily] | None = None
) -> FimFamily | None:
    """The model's FIM family: a configured override, else its name, else its template."""
    if overrides:
        wanted = model_key(model)
        for key, family in overrides.items():
            if model_key(key) == wanted:
                return family
    return _from_name(model) or _from_template(template)


def _from_name(model: str) -> FimFamily | None:
    # The last path segment without its tag: `hf.co/owner/Repo-GGUF:Q4_K_M` -> `repo-gguf`.
    base = model.strip().lower().rsplit("/", 1)[-1].split(":", 1)[0]
    for pattern, family in _NAME_PATTERNS:
        if pattern.search(base):
            return family
    return None


def _from_template(template: str | None) -> FimFamily | None:
    for markers, family in _TEMPLATE_MARKERS:
        if template and all(m in template for m in markers):
            return family
    return None


@dataclass(frozen=True, slots=True)
class Context:
    """The prefix and suffix kept for the prompt, and how many characters were cut."""

    prefix: str
    suffix: str
    prefix_cut: int = 0
    suffix_cut: int = 0


def trim_context(prefix: str, suffix: str, budget_tokens: int) -> Context:
    """Keep what is nearest the cursor within `budget_tokens` (estimated).

    The prefix loses its start and the suffix its end. The prefix may take
    `PREFIX_SHARE` of the budget, the suffix the rest, and whatever one side does
    not need goes to the other. Cuts snap to a line boundary when that costs at
    most half of the kept text, so the model does not see a line torn mid-token.
    """
    budget = max(0, budget_tokens) * CHARS_PER_TOKEN
    prefix_share = int(budget * PREFIX_SHARE)
    prefix_room = max(prefix_share, budget - len(suffix))
    suffix_room = max(budget - prefix_share, budget - len(prefix))
    kept_prefix, kept_suffix = _keep_end(prefix, prefix_room), _keep_start(suffix, suffix_room)
    cuts = len(prefix) - len(kept_prefix), len(suffix) - len(kept_suffix)
    return Context(kept_prefix, kept_suffix, *cuts)


def _keep_end(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    start = len(text) - room
    # From `start - 1`: a window that already begins a line loses nothing.
    newline = text.find("\n", start - 1, start + room // 2)
    if newline >= 0:
        return text[newline + 1 :]
    # No line boundary close by: cut mid-line, but never leave a combining mark
    # or joiner at the front without the character it belonged to.
    while start < len(text) and _joins_previous(text[start]):
        start += 1
    return text[start:]


def _keep_start(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    newline = text.rfind("\n", room - room // 2, room)
    if newline >= 0:
        return text[: newline + 1]
    end = room
    while end > 0 and _joins_previous(text[end]):
        end -= 1  # keep a character together with the marks that follow it
    return text[:end]


def _joins_previous(char: str) -> bool:
    return unicodedata.category(char).startswith("M") or char == "\u200d"


@dataclass(frozen=True, slots=True)
class FimPlan:
    """How to send one completion to Ollama's `/api/generate`.

    `prompt`, `suffix` (None: send no `suffix` field) and `raw` are the request
    fields; `stop` is added to `options.stop`; `context` is what was kept.
    """

    mode: Mode
    prompt: str
    suffix: str | None
    raw: bool
    stop: tuple[str, ...]
    family: FimFamily | None
    context: Context


def plan_fim(
    model: str,
    prefix: str,
    suffix: str,
    template: str | None,
    budget_tokens: int,
    num_predict: int = 0,
    family: FimFamily | None = None,
    overrides: Mapping[str, FimFamily] | None = None,
) -> FimPlan:
    """Decide how to ask `model` for the text between `prefix` and `suffix`.

    `template` is the model's Ollama template (None when unknown), `budget_tokens`
    its context window; `num_predict` tokens of it are kept free for the answer.
    `family` forces the format (else `overrides`, the name, then the template
    decide) but a template with `.Suffix` still wins: Ollama knows its model. Modes:

    - `plain`: no suffix was sent; the prefix is the prompt.
    - `suffix`: the template uses `.Suffix`; Ollama builds the FIM prompt itself,
      with the right special-token handling for that model.
    - `raw`: a known family without `.Suffix` (or template unknown); the FIM
      prompt is built here and sent with `raw: true`.
    - `prefix_only`: unknown family and no `.Suffix`. Sending `suffix` would get
      Ollama's "does not support insert" error and a guessed format would make a
      model emit garbage; a completion made without the suffix is still useful.
    """
    family = family or detect_family(model, template, overrides)
    mode = _mode(suffix, template, family)
    # Raw mode's markers take room in the window too (rounded up).
    markup = -(-len(family.build("", "")) // CHARS_PER_TOKEN) if family and mode == "raw" else 0
    budget = budget_tokens - max(0, num_predict) - markup
    kept = trim_context(prefix, suffix if mode in ("suffix", "raw") else "", budget)
    stop = family.stop if family else ()
    if mode == "suffix":
        return FimPlan(mode, kept.prefix, kept.suffix, False, stop, family, kept)
    if mode == "raw" and family is not None:
        prompt = family.build(kept.prefix, kept.suffix)
        return FimPlan(mode, prompt, None, True, stop, family, kept)
    if mode == "prefix_only":
        kept = Context(kept.prefix, "", kept.prefix_cut, len(suffix))
    return FimPlan(mode, kept.prefix, None, False, stop, family, kept)


def _mode(suffix: str, template: str | None, family: FimFamily | None) -> Mode:
    if not suffix:
        return "plain"
    return "suffix" if template_supports_suffix(template) else "raw" if family else "prefix_only"
