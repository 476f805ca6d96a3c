"""The models a simulated worker serves, and how Ollama describes them.

A model is a name plus a prompt template. Whether it can fill in the middle is
not a flag but a property of its template, exactly as in Ollama: a template
that mentions `.Suffix` supports insert, any other answers "does not support
insert" to a request with a suffix. The default pair mirrors the Ollama library:
`deepseek-coder:6.7b-base` ships the bare `{{ .Prompt }}` template, and
`starcoder2:3b` a FIM template.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

PLAIN_TEMPLATE = "{{ .Prompt }}"
# Where a bare name lives in Ollama's registry: `starcoder2:3b` is short for this plus it.
_LIBRARY = "registry.ollama.ai/library/"

# FIM layouts by model family (docs/ARCHITECTURE.md, "Context processing"); a family not
# listed gets StarCoder's, the most common one.
_FIM_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("deepseek", "<｜fim▁begin｜>{{ .Prompt }}<｜fim▁hole｜>{{ .Suffix }}<｜fim▁end｜>"),
    ("codellama", "<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"),
    ("qwen", "<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>"),
    ("", "<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"),
)

_SIZE_TAG = re.compile(r"(\d+(?:\.\d+)?)([bm])", re.IGNORECASE)


def fim_template(name: str) -> str:
    """An Ollama template that renders a FIM prompt when a suffix is given."""
    base = name.rsplit("/", 1)[-1].lower()
    layout = next(fim for family, fim in _FIM_LAYOUTS if base.startswith(family))
    return f"{{{{- if .Suffix }}}}{layout}{{{{- else }}}}{{{{ .Prompt }}}}{{{{- end }}}}"


def normalize_model(name: str) -> str:
    """Ollama's canonical model name: no registry prefix, and `latest` when untagged.

    The inverse of `ModelSpec.registry_name`. The gateway applies the same rule
    to what clients send (gateway/pool/backends.py) with code of its own: this
    worker stands in for Ollama and imports nothing of the gateway, so a
    mistake in either is seen as a mismatch rather than shared by both.
    """
    short = name.strip().removeprefix(_LIBRARY).removeprefix("library/")
    return short if ":" in short.rpartition("/")[2] else f"{short}:latest"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as `/api/tags` and `/api/show` describe it."""

    name: str
    template: str = PLAIN_TEMPLATE
    family: str = "llama"
    parameter_size: str = "7B"
    parameter_count: int = 7_000_000_000
    quantization_level: str = "Q4_0"
    size: int = 3_800_000_000
    context_length: int = 16384

    @property
    def supports_insert(self) -> bool:
        # Ollama's own test: does the template use the Suffix variable?
        return ".Suffix" in self.template

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def capabilities(self) -> list[str]:
        return ["completion", "insert"] if self.supports_insert else ["completion"]

    @property
    def registry_name(self) -> str:
        """How Ollama names the model in its errors."""
        return self.name if "/" in self.name else f"{_LIBRARY}{self.name}"


DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "deepseek-coder:6.7b-base",
        template=PLAIN_TEMPLATE,  # the real library model has no .Suffix: no insert
        family="llama",
        parameter_size="7B",
        parameter_count=6_740_000_000,
        size=3_827_834_503,
    ),
    ModelSpec(
        "starcoder2:3b",
        template=fim_template("starcoder2"),
        family="starcoder2",
        parameter_size="3B",
        parameter_count=3_030_000_000,
        size=1_712_000_000,
    ),
)


def model_from_arg(arg: str) -> ModelSpec:
    """A model from the command line: `NAME` (plain template) or `NAME:fim` (FIM template)."""
    fim = arg.endswith(":fim")
    name = normalize_model(arg[: -len(":fim")] if fim else arg)
    if not name.split(":", 1)[0]:
        raise ValueError(f"bad model name {arg!r}")
    family = name.rsplit("/", 1)[-1].split(":", 1)[0]
    match = _SIZE_TAG.search(name.split(":", 1)[1])
    count = 7_000_000_000
    if match:
        count = int(float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6))
    return ModelSpec(
        name,
        template=fim_template(name) if fim else PLAIN_TEMPLATE,
        family=family,
        parameter_size=f"{count / 1e9:.3g}B",
        parameter_count=count,
        size=count * 9 // 16,  # Q4_0 is ~4.5 bits a weight
    )


def details(spec: ModelSpec) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": spec.parameter_size,
        "quantization_level": spec.quantization_level,
    }


def tags_entry(spec: ModelSpec, modified_at: str) -> dict[str, Any]:
    """One element of `GET /api/tags`."""
    return {
        "name": spec.name,
        "model": spec.name,
        "modified_at": modified_at,
        "size": spec.size,
        "digest": spec.digest,
        "details": details(spec),
    }


def ps_entry(spec: ModelSpec, expires_at: str, context_length: int) -> dict[str, Any]:
    """One element of `GET /api/ps`: a loaded model (all of it in "VRAM")."""
    return {
        "name": spec.name,
        "model": spec.name,
        "size": spec.size,
        "digest": spec.digest,
        "details": details(spec),
        "expires_at": expires_at,
        "size_vram": spec.size,
        "context_length": context_length,
    }


def show_payload(spec: ModelSpec, modified_at: str) -> dict[str, Any]:
    """`POST /api/show`: the fields clients read (template and capabilities above all)."""
    modelfile = (
        '# Modelfile generated by "ollama show"\n'
        "# SIMULATED by ghostgate-sim: no weights behind this model\n"
        f"FROM {spec.name}\n"
        f'TEMPLATE """{spec.template}"""\n'
    )
    return {
        "license": "",
        "modelfile": modelfile,
        "parameters": "",
        "template": spec.template,
        "details": details(spec),
        "model_info": {
            "general.architecture": spec.family,
            "general.parameter_count": spec.parameter_count,
            f"{spec.family}.context_length": spec.context_length,
        },
        "capabilities": spec.capabilities,
        "modified_at": modified_at,
    }
