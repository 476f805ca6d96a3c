"""The simulated worker's exceptions; each becomes Ollama's `{"error": "..."}` with its status.

    SimError                  status  meaning
    ├── BadRequest              400   malformed body, bad field, insert unsupported
    ├── ModelNotFound           404   the worker does not serve the model
    └── ServerBusy              503   every slot busy and the queue full

They are raised before a response starts; once tokens flow, a request can
only end (done line) or be abandoned (client gone), never change status.
"""

from __future__ import annotations


class SimError(Exception):
    """Base: an Ollama API error with its HTTP status."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SimError):
    """The request is malformed or asks for something the model cannot do."""

    status = 400


class ModelNotFound(SimError):
    """Unknown model, worded as Ollama words it."""

    status = 404

    def __init__(self, model: str) -> None:
        super().__init__(f'model "{model}" not found, try pulling it first')


class ServerBusy(SimError):
    """OLLAMA_MAX_QUEUE reached; Ollama's message, double space included."""

    status = 503

    def __init__(self) -> None:
        super().__init__("server busy, please try again.  maximum pending requests exceeded")
