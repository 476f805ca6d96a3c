"""LiteLLM's proxy as the other reference: what teams often put in front of
Ollama to get an OpenAI API. It speaks HTTP/1.1 only and OpenAI's dialect, so
its path is `POST /v1/completions` (streamed SSE) with one connection per
concurrent request, translated by LiteLLM to the same simulated worker's
`/api/generate`.

It is not a dependency of Ghostgate (it pins its own openai, httpx, pydantic
...): `make bench` installs it into `.venv-litellm`; any other install is found
through `GHOSTGATE_LITELLM` (the `litellm` executable) or `PATH`. Without it
the benchmark leaves this path out and says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from loadtests.bench.clients import MODEL

VENV_BINARY = Path(".venv-litellm/bin/litellm")


def litellm_binary() -> str | None:
    configured = os.environ.get("GHOSTGATE_LITELLM")
    if configured:
        return configured
    if VENV_BINARY.exists():
        return str(VENV_BINARY.resolve())
    return shutil.which("litellm")


def litellm_config(backend: str) -> str:
    """The proxy's config.yaml: one model, the simulated worker as its Ollama.

    No database and no callbacks; the master key (LiteLLM refuses to start
    without one) comes in the environment, see `litellm_env`."""
    return f"""\
model_list:
  - model_name: "{MODEL}"
    litellm_params:
      model: "ollama/{MODEL}"
      api_base: "{backend}"
litellm_settings:
  drop_params: true
  set_verbose: false
"""


def litellm_command(binary: str, config: Path, host: str, port: int) -> list[str]:
    return [binary, "--config", str(config), "--host", host, "--port", str(port)]


def litellm_env(master_key: str) -> dict[str, str]:
    """Quiet, offline (the model cost map ships with the package), and keyed:
    requests carry `Authorization: Bearer <master_key>`, as Ghostgate's carry a JWT."""
    return {
        **os.environ,
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }
