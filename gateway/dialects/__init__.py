"""The API dialects a region speaks, each parsing its own requests and encoding
its own answers, on top of the one generation flow (gateway/generation.py).

    ollama/   /api/generate, /api/chat (generation), /api/show, /api/tags, /api/ps,
              /api/version, / (routes)
    openai/   /v1/completions, /v1/chat/completions (generation), /v1/models; SSE
    copilot   /v1/engines/{engine}/completions: OpenAI's encoding, Copilot's rules
    ndjson    NDJSON lines split across reads
"""

from __future__ import annotations

from gateway.dialects.copilot import CopilotGeneration
from gateway.dialects.ollama.generation import OllamaGeneration
from gateway.dialects.ollama.request import parse_chat, parse_generate
from gateway.dialects.ollama.routes import ShowEndpoint, listing, root, version
from gateway.dialects.openai.generation import ChatGeneration, CompletionsGeneration
from gateway.dialects.openai.routes import models_listing

__all__ = [
    "ChatGeneration",
    "CompletionsGeneration",
    "CopilotGeneration",
    "OllamaGeneration",
    "ShowEndpoint",
    "listing",
    "models_listing",
    "parse_chat",
    "parse_generate",
    "root",
    "version",
]
