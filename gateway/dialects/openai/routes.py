"""OpenAI's routes besides generation (gateway/dialects/openai/generation.py):
`GET /v1/models`."""

from __future__ import annotations

import time
from typing import Any

from gateway.asgi import Receive, Scope, Send, send_json
from gateway.services import Services


def models_listing(services: Services) -> Any:
    """GET /v1/models: what this region serves, as OpenAI lists models."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        now = int(time.time())
        data = [
            {"id": m, "object": "model", "created": now, "owned_by": "ghostgate"}
            for m in services.served_models()
        ]
        await send_json(send, 200, {"object": "list", "data": data})

    return endpoint
