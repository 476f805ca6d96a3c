"""`POST /api/generate` and `/api/chat`: Ollama's generations, passed through.

The client's exact body goes to a backend (rewritten only to rescue a
`suffix` the model's template cannot take) and the NDJSON stream comes back
chunk by chunk as tokens arrive: nothing is buffered or re-encoded. The token
counts come from Ollama's last line, found whatever the read boundaries.
The flow around it (superseding, memory, slots) is gateway/generation.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.asgi import Scope, Send, send_bytes
from gateway.completion import Completed, detect_family, template_supports_suffix
from gateway.dialects.ollama.memory import completed_from_ndjson, memory_keys, ndjson_for
from gateway.dialects.ollama.request import GenerationRequest
from gateway.errors import ModelNotFound
from gateway.generation import Generation, Memo, Plan
from gateway.pool import Backend, Job, Priority, UpstreamResponse
from gateway.services import Services
from gateway.settings import Limits
from gateway.trace import Stage, Trace

END = {"type": "http.response.body", "body": b"", "more_body": False}


@dataclass(slots=True)
class OllamaPlan(Plan):
    stream: bool
    remember: bool  # keep the chunks: the cache or typing-through may use them


class OllamaGeneration:
    """The Ollama dialect of the generation flow, for `/api/generate` or `/api/chat`."""

    def __init__(
        self,
        services: Services,
        path: str,
        parse: Callable[[bytes, Limits], GenerationRequest],
        priority: Priority,
    ) -> None:
        self._services = services
        self._path = path
        self._parse = parse
        self._priority = priority
        self.chat = path == "/api/chat"
        self.completion_route = not self.chat

    def parse(self, scope: Scope, raw: bytes) -> Generation[tuple[GenerationRequest, bytes]]:
        services = self._services
        request = self._parse(raw, services.settings.limits)
        # Refused here, before the name reaches the template cache, the group,
        # the completion memory or the queue.
        if not known_model(request.model, services.scheduler.backends):
            raise ModelNotFound(f'model "{request.model[:64]}" not found, try pulling it first')
        return Generation(
            (request, raw), request.model, request.stream, requested_tokens=request.num_predict
        )

    async def plan(
        self, generation: Generation[tuple[GenerationRequest, bytes]], trace: Trace
    ) -> OllamaPlan:
        request, raw = generation.request
        memo = None
        if not self.chat:
            body = request.body
            if body.get("suffix") and not body.get("raw"):
                raw = await self._insert_rescue(request) or raw
            waste = self._services.settings.waste
            cache_key, context = memory_keys(request, waste, trace.group)
            if cache_key or context:
                prompt, suffix = body.get("prompt") or "", body.get("suffix") or ""
                memo = Memo(cache_key, context, trace.group, prompt, suffix)
        job = Job(request.model, self._path, raw, self._priority)
        return OllamaPlan([job], request.stream, memo is not None, memo=memo)

    async def send_recalled(self, plan: OllamaPlan, completed: Completed, send: Send) -> None:
        model = plan.jobs[0].model
        await send_bytes(send, 200, ndjson_for(completed, model, plan.stream), _type(plan.stream))

    async def relay(
        self, plan: OllamaPlan, responses: list[UpstreamResponse], trace: Trace, send: Send
    ) -> Completed | None:
        (response,) = responses
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", response.content_type)],
        }
        await send(start)
        collected: list[bytes] | None = [] if plan.remember else None
        await relay_body(response, trace, send, collected)
        return completed_from_ndjson(collected) if collected else None

    async def send_superseded(
        self, generation: Generation[tuple[GenerationRequest, bytes]], trace: Trace, send: Send
    ) -> None:
        """End the way Ollama ends any stream: a last `done` line, here with
        `done_reason: "superseded"`, so the client's parser sees a clean end."""
        final: dict[str, Any] = {
            "model": generation.model,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "done": True,
            "done_reason": "superseded",
        }
        if self.chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        line = json.dumps(final).encode() + b"\n"
        if trace.response_started:
            await send({"type": "http.response.body", "body": line, "more_body": False})
        else:
            await send_bytes(send, 200, line, _type(generation.stream))

    async def _insert_rescue(self, request: GenerationRequest) -> bytes | None:
        """A `suffix` for a model whose template lacks `.Suffix` would get Ollama's
        "does not support insert" 400. When the model's FIM family is known, send
        the FIM prompt it was trained on instead, with `raw: true`."""
        services = self._services
        template = await services.templates.template(request.model, services.scheduler.backends)
        if template is None or template_supports_suffix(template):
            return None
        family = detect_family(request.model, template, services.fim_overrides)
        if family is None:
            return None
        body = dict(request.body)
        body["prompt"] = family.build(body.get("prompt") or "", body.pop("suffix"))
        body["raw"] = True
        options = dict(body.get("options") or {})
        stop = options.get("stop")
        options["stop"] = [*(stop if isinstance(stop, list) else []), *family.stop]
        body["options"] = options
        return json.dumps(body).encode()


def known_model(model: str, backends: Sequence[Backend]) -> bool:
    """Whether `model` may be served: some backend, healthy or not, lists it.

    `choose_backend`'s own rule: with no backend healthy the model lists may be
    stale or empty, so that is the scheduler's 503 and not a 404."""
    return any(b.serves(model) for b in backends) or not any(b.healthy for b in backends)


def _type(stream: bool) -> bytes:
    return b"application/x-ndjson" if stream else b"application/json"


async def relay_body(
    response: UpstreamResponse, trace: Trace, send: Send, collected: list[bytes] | None = None
) -> None:
    """Forward every chunk as it arrives, then account the final stats line.

    `collected`, when given, keeps the chunks for the cache and typing-through.
    """
    last = LastLine()
    async for chunk in response.chunks():
        if trace.stage is not Stage.STREAMING:
            trace.stage = Stage.STREAMING
        trace.streamed_tokens += chunk.count(b"\n")  # one NDJSON line per token
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if collected is not None:
            collected.append(chunk)
        last.feed(chunk)
    await send(END)
    trace.stage = Stage.DONE
    account_final_line(trace, last.value())


class LastLine:
    """The last line of an NDJSON stream, whatever the read boundaries.

    Per chunk: two `rfind`s and no copy in the common case (each chunk ends
    with a newline); the line is only assembled when asked for."""

    __slots__ = ("_line", "_open")

    def __init__(self) -> None:
        self._open: list[bytes] = []  # the pieces of a line not yet ended
        self._line: tuple[list[bytes], bytes, int, int] | None = None

    def feed(self, chunk: bytes) -> None:
        end = chunk.rfind(b"\n")
        if end < 0:
            self._open.append(chunk)
            return
        start = chunk.rfind(b"\n", 0, end) + 1
        # The last complete line ends at `end`; it began in an earlier chunk
        # when this chunk holds no other newline before it.
        self._line = (self._open if start == 0 else [], chunk, start, end)
        self._open = [chunk[end + 1 :]] if end + 1 < len(chunk) else []

    def value(self) -> bytes:
        """The last non-empty line (an unterminated one at the end counts)."""
        tail = b"".join(self._open)
        if tail.strip():
            return tail
        if self._line is None:
            return b""
        before, chunk, start, end = self._line
        return b"".join(before) + chunk[start:end]


def account_final_line(trace: Trace, line: bytes) -> None:
    """Token counts from Ollama's last NDJSON line: one parse per request."""
    try:
        final = json.loads(line)
    except ValueError:
        return
    if not isinstance(final, dict):
        return
    if "error" in final:
        trace.outcome = "upstream_error"
        trace.error = str(final["error"])[:200]
    prompt, generated = final.get("prompt_eval_count"), final.get("eval_count")
    trace.prompt_tokens = prompt if isinstance(prompt, int) else 0
    trace.generated_tokens = generated if isinstance(generated, int) else 0
    trace.done_reason = str(final.get("done_reason", ""))
