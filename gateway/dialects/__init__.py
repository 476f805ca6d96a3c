"""The API dialects a region speaks, each parsing its own requests and encoding
its own answers, on top of the one generation flow (gateway/generation.py).

    ollama/   /api/generate, /api/chat (generation), /api/show, /api/tags, /api/ps,
              /api/version, / (routes)
    openai/   /v1/completions, /v1/chat/completions (generation), /v1/models; SSE
    copilot   /v1/engines/{engine}/completions: OpenAI's encoding, Copilot's rules
    ndjson    NDJSON lines split across reads
"""

from __future__ import annotations
