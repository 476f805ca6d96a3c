"""Copilot's dialect: `POST /v1/engines/{engine}/completions`.

OpenAI's completions (gateway/dialects/openai/generation.py) with Copilot's
differences: the engine in the path names the model, and any engine maps to
the region's default completion model when it names none that is served
(Copilot's engines are GitHub's names); the output follows Copilot's rules,
`stop: ["\\n"]` as single-line mode and `extra.trim_by_indentation` as its
client's block rule (gateway/completion/output.py).
"""

from __future__ import annotations

from gateway.asgi import Scope
from gateway.completion import OutputRules, copilot_rules
from gateway.dialects.openai.generation import CompletionsGeneration
from gateway.dialects.openai.request import CompletionRequest


class CopilotGeneration(CompletionsGeneration):
    """Copilot's completions: the engine is the model, Copilot's output rules."""

    strict_model = False

    def _model_override(self, scope: Scope) -> str | None:
        engine = scope.get("path_params", {}).get("engine")
        return str(engine) if engine else None

    def _rules(self, request: CompletionRequest, fim_stop: tuple[str, ...]) -> OutputRules:
        return copilot_rules(request.prompt, request.suffix, request.stop, request.extra, fim_stop)
