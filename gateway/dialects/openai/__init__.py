"""OpenAI's API, translated to Ollama generations: `/v1/completions` (with
`suffix` for fill-in-the-middle), `/v1/chat/completions`, `/v1/models`.

    request     parsing and checking OpenAI's request bodies; Ollama options
    stream      choices as SSE events and JSON bodies
    generation  completions and chat, OpenAI's dialect of the generation flow
    routes      /v1/models
"""

from __future__ import annotations
