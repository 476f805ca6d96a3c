"""Ghostgate's global edge: API keys, tokens, region choice and forwarding."""
