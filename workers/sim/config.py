"""The simulated worker's configuration: one frozen object, built once and passed in.

Values are grouped like httpx's `Timeout` and `Limits` so each part of the
worker takes only what it needs. The command line (`workers.sim.__main__`) is
the only place that reads flags and the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.sim.catalog import DEFAULT_MODELS, ModelSpec

# What `GET /api/version` answers: the Ollama release whose behaviour this mimics.
OLLAMA_VERSION = "0.12.6"


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the simulated GPU takes. Rates are per slot; all are real sleeps."""

    load_seconds: float = 0.3
    prefill_tps: float = 2000.0
    decode_tps: float = 50.0

    def __post_init__(self) -> None:
        if self.load_seconds < 0 or self.prefill_tps <= 0 or self.decode_tps <= 0:
            raise ValueError("load time must be >= 0 and rates > 0")


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency and output bounds, as Ollama's OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE."""

    parallel: int = 4  # generations at once, per model (Ollama runs one runner per model)
    max_queue: int = 512  # requests waiting for a slot, all models together; then 503
    num_predict_cap: int = 4096
    # Without options.num_predict the "model" stops by itself after a length
    # drawn from the prompt's hash in [min_tokens, max_tokens].
    min_tokens: int = 16
    max_tokens: int = 64
    num_ctx: int = 4096  # Ollama's default context; longer prompts are truncated to it

    def __post_init__(self) -> None:
        if self.parallel < 1 or self.max_queue < 0:
            raise ValueError("parallel must be >= 1 and max_queue >= 0")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError("need 1 <= min_tokens <= max_tokens")


@dataclass(frozen=True, slots=True)
class FastMode:
    """Throughput-benchmark mode: no load, no prefill, fixed tokens at a fixed pace."""

    enabled: bool = False
    tokens: int = 20
    interval: float = 0.020

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.interval < 0:
            raise ValueError("fast mode needs tokens >= 1 and interval >= 0")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulated worker needs, in one value."""

    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    timing: Timing = Timing()
    limits: Limits = Limits()
    fast: FastMode = FastMode()
    # Seconds a model stays loaded after its last use; negative means forever
    # (Ollama's OLLAMA_KEEP_ALIVE, default 5m).
    keep_alive: float = 300.0
    # How often the connection watcher looks for clients that left while their
    # request was queued, loading or in prefill (it only observes; see engine.py).
    watch_interval: float = 0.005
    # On shutdown, how long in-flight generations may run before being cancelled.
    shutdown_timeout: float = 0.5
    version: str = OLLAMA_VERSION

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("at least one model is needed")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names in {names}")
