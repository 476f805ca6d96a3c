"""Ollama's API: generation passed through byte for byte, listings from memory.

request  parsing and checking Ollama's request bodies
routes   the endpoints
memory   Ollama's NDJSON to and from what the completion cache remembers
"""

from __future__ import annotations
