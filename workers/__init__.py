"""Ghostgate's backends: real `ollama serve` processes and the simulated Ollama worker."""
