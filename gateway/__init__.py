"""Ghostgate's regional data plane: the HTTP/2 proxy in front of Ollama backends."""
