"""The Ollama dialect: generation passed through byte for byte, listings from memory.

`/api/generate` and `/api/chat` forward the client's exact body to a backend
and relay the NDJSON stream back chunk by chunk as tokens arrive: nothing is
buffered or re-encoded. `/api/tags` and `/api/ps` answer from what the health
prober last saw, so listing models costs no backend round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.asgi import (
    Receive,
    Scope,
    Send,
    Superseded,
    read_body,
    send_bytes,
    send_json,
    until_disconnect,
)
from gateway.completion import Completed, detect_family, template_supports_suffix
from gateway.dialects.ollama.memory import completed_from_ndjson, memory_keys, ndjson_for
from gateway.dialects.ollama.request import GenerationRequest, parse_model_field
from gateway.errors import ModelNotFound, NoCapacity, UpstreamError
from gateway.pool import Backend, Job, Priority, UpstreamResponse, normalize_model
from gateway.services import Services
from gateway.trace import Stage, Trace, trace_of

END = {"type": "http.response.body", "body": b"", "more_body": False}


class GenerationEndpoint:
    """POST /api/generate and /api/chat: one generation, relayed as it happens."""

    def __init__(
        self,
        services: Services,
        upstream_path: str,
        parse: Callable[[bytes], GenerationRequest],
        priority: Priority,
    ) -> None:
        self._services = services
        self._path = upstream_path
        self._parse = parse
        self._priority = priority

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace = trace_of(scope)
        raw = await read_body(scope, receive, self._services.settings.limits.max_body_bytes)
        request = self._parse(raw)
        trace.model = request.model
        trace.requested_tokens = request.num_predict
        ticket = await self._services.claim_group(scope, self._path == "/api/generate")
        try:
            await until_disconnect(
                receive,
                self._run(request, raw, trace, send),
                ticket.cancelled if ticket else None,
            )
        except Superseded:
            trace.outcome = "superseded"
            await send_superseded(send, trace, request, chat=self._path == "/api/chat")
        finally:
            if ticket is not None:
                self._services.supersessions.release(ticket)

    async def _run(self, request: GenerationRequest, raw: bytes, trace: Trace, send: Send) -> None:
        if (
            self._path == "/api/generate"
            and request.body.get("suffix")
            and not request.body.get("raw")
        ):
            raw = await self._insert_rescue(request) or raw
        cache_key, context = (None, None)
        if self._path == "/api/generate":
            cache_key, context = memory_keys(request, self._services.settings.waste, trace.group)
            if await self._from_memory(request, cache_key, context, trace, send):
                return
        job = Job(request.model, self._path, raw, self._priority)
        collected: list[bytes] | None = [] if (cache_key or context) else None
        await self._relay(job, trace, send, collected)
        completed = completed_from_ndjson(collected) if collected else None
        if completed is not None:
            await self._remember(request, cache_key, context, trace, completed)

    async def _from_memory(
        self,
        request: GenerationRequest,
        cache_key: str | None,
        context: str | None,
        trace: Trace,
        send: Send,
    ) -> bool:
        """Answer from the cache or by typing-through, without a backend; False if neither."""
        memory = self._services.memory
        completed, kind = None, ""
        if cache_key:
            completed, kind = await memory.cached(cache_key), "exact"
        if completed is None and context and trace.group:
            prompt, suffix = request.body.get("prompt") or "", request.body.get("suffix") or ""
            completed, kind = memory.typed_through(trace.group, context, prompt, suffix), "typing"
        if completed is None:
            return False
        self._services.metrics.cache_hits.labels(kind).inc()
        trace.outcome = "cache_hit" if kind == "exact" else "typing_through"
        trace.stage = Stage.DONE
        content_type = b"application/x-ndjson" if request.stream else b"application/json"
        await send_bytes(
            send, 200, ndjson_for(completed, request.model, request.stream), content_type
        )
        return True

    async def _remember(
        self,
        request: GenerationRequest,
        cache_key: str | None,
        context: str | None,
        trace: Trace,
        completed: Completed,
    ) -> None:
        memory = self._services.memory
        if cache_key:
            await memory.store(cache_key, completed)
        if context and trace.group:
            memory.remember(
                trace.group,
                context,
                request.body.get("prompt") or "",
                request.body.get("suffix") or "",
                completed,
            )

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

    async def _relay(
        self, job: Job, trace: Trace, send: Send, collected: list[bytes] | None = None
    ) -> None:
        relay = self._services.relay
        response = await relay.open(job, trace)
        error: BaseException | None = None
        try:
            if response.status != 200:
                await pass_error(response, send)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", response.content_type)],
                }
            )
            await relay_body(response, trace, send, collected)
        except BaseException as exc:
            error = exc
            raise
        finally:
            relay.finish(response, error)


async def relay_body(
    response: UpstreamResponse, trace: Trace, send: Send, collected: list[bytes] | None = None
) -> None:
    """Forward every chunk as it arrives, then account the final stats line.

    `collected`, when given, keeps the chunks for the cache and typing-through.
    """
    last = b""
    async for chunk in response.chunks():
        if not last:
            trace.stage = Stage.STREAMING
        trace.streamed_tokens += chunk.count(b"\n")  # one NDJSON line per token
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if collected is not None:
            collected.append(chunk)
        last = chunk
    await send(END)
    trace.stage = Stage.DONE
    account_final_line(trace, last)


async def send_superseded(send: Send, trace: Trace, request: GenerationRequest, chat: bool) -> None:
    """End a superseded request the way Ollama ends any stream: a last `done` line,
    here with `done_reason: "superseded"`, so the client's parser sees a clean end."""
    final: dict[str, Any] = {
        "model": request.model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "done": True,
        "done_reason": "superseded",
    }
    if chat:
        final["message"] = {"role": "assistant", "content": ""}
    else:
        final["response"] = ""
    line = json.dumps(final).encode() + b"\n"
    try:
        if trace.response_started:
            await send({"type": "http.response.body", "body": line, "more_body": False})
        else:
            content_type = b"application/x-ndjson" if request.stream else b"application/json"
            await send_bytes(send, 200, line, content_type)
    except OSError:
        pass  # the client left as well


def account_final_line(trace: Trace, chunk: bytes) -> None:
    """Token counts from Ollama's last NDJSON line: one parse per request."""
    line = chunk.rstrip().rpartition(b"\n")[2]
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


async def pass_error(response: UpstreamResponse, send: Send) -> None:
    """A backend's 4xx reaches the client as Ollama said it; a 5xx becomes our 502."""
    body = await response.read()
    if response.status >= 500:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode("utf-8", "replace")
        raise UpstreamError(f"backend error: {message}")
    await send_bytes(send, response.status, body, response.content_type)


class ShowEndpoint:
    """POST /api/show: asked of a backend that serves the model (no slot needed)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(scope, receive, self._services.settings.limits.max_body_bytes)
        model = parse_model_field(raw)
        trace_of(scope).model = model
        backend = any_backend_with(self._services.scheduler.backends, model)
        response = await self._services.upstream.post(backend, "/api/show", raw)
        try:
            await send_bytes(send, response.status, await response.read(), response.content_type)
        finally:
            response.close()


def any_backend_with(backends: list[Backend], model: str) -> Backend:
    """The least busy healthy backend that lists `model`."""
    candidates = [b for b in backends if b.healthy and b.serves(model)]
    if candidates:
        return min(candidates, key=lambda b: b.inflight)
    if any(b.serves(model) for b in backends) or not any(b.healthy for b in backends):
        raise NoCapacity(f'no healthy backend serves "{model}"', retry_after=2)
    raise ModelNotFound(f'model "{model}" not found, try pulling it first')


def merged_entries(backends: list[Backend], key: str) -> list[Any]:
    """Model entries of every healthy backend, each model once."""
    seen: dict[str, Any] = {}
    for backend in backends:
        if not backend.healthy:
            continue
        for entry in backend.details.get(key, []):  # type: ignore[attr-defined]
            name = entry.get("name") or entry.get("model") or ""
            seen.setdefault(normalize_model(name), entry)
    return [seen[name] for name in sorted(seen)]


def listing(services: Services, key: str) -> Callable[[Scope, Receive, Send], Any]:
    """GET /api/tags (key "tags") or /api/ps (key "ps")."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"models": merged_entries(services.scheduler.backends, key)})

    return endpoint


def version(services: Services) -> Callable[[Scope, Receive, Send], Any]:
    """GET /api/version: the version of the Ollama behind this region."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        healthy = [b for b in services.scheduler.backends if b.healthy]
        if not healthy:
            raise NoCapacity("no healthy backend", retry_after=2)
        payload = await services.upstream.get_json(healthy[0], "/api/version", 5.0)
        await send_json(send, 200, payload)

    return endpoint


async def root(scope: Scope, receive: Receive, send: Send) -> None:
    """GET / and HEAD /: what plugins probe to see whether "Ollama" is up."""
    await send_bytes(send, 200, b"Ollama is running", b"text/plain; charset=utf-8")
