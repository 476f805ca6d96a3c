"""The OpenAI and Copilot dialects: `/v1/completions`, `/v1/engines/{engine}/completions`,
`/v1/chat/completions` and `/v1/models`.

Each request becomes one Ollama generation per choice (`n`), always streamed
upstream. Every choice runs in its own task that reads its backend's NDJSON,
filters the text (stop sequences, FIM tokens, Copilot's indentation rule) and
sends SSE events as tokens arrive. A choice that is done early (a stop
sequence, the indentation rule) closes its upstream at once, so Ollama stops
generating text nobody will see.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from gateway.asgi import Receive, Scope, Send, Superseded, read_body, send_json, until_disconnect
from gateway.completion import (
    Completed,
    FimFamily,
    OutputRules,
    copilot_rules,
    deterministic,
    fingerprint,
    plan_fim,
    resolve_model,
)
from gateway.dialects.ndjson import LineSplitter
from gateway.dialects.openai.request import (
    ChatRequest,
    CompletionRequest,
    chat_body,
    ollama_options,
    parse_chat_completion,
    parse_completion,
)
from gateway.dialects.openai.stream import DONE, ChoiceState, Encoder
from gateway.errors import GatewayError
from gateway.pool import Job, Priority, UpstreamResponse
from gateway.services import Services
from gateway.trace import Stage, Trace, trace_of

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A checked request and the served model it resolved to."""

    request: CompletionRequest | ChatRequest
    model: str
    stream: bool
    n: int


@dataclass(frozen=True, slots=True)
class Memo:
    """Where a completion may come from, or go to, besides a backend."""

    cache_key: str | None
    context: str | None
    group: str | None
    prompt: str
    suffix: str


@dataclass(frozen=True, slots=True)
class Translation:
    """What to run upstream for one request, and how to present it."""

    jobs: list[Job]
    rules: OutputRules
    encoder: Encoder
    stream: bool
    memo: Memo | None = None


class TranslatedEndpoint:
    """Shared flow: parse, plan, open every choice's upstream, then relay."""

    chat = False
    completion_route = False

    def __init__(self, services: Services) -> None:
        self.services = services

    def parse(self, scope: Scope, raw: bytes) -> Parsed:
        raise NotImplementedError

    async def plan(self, parsed: Parsed, trace: Trace) -> Translation:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace = trace_of(scope)
        raw = await read_body(scope, receive, self.services.settings.limits.max_body_bytes)
        parsed = self.parse(scope, raw)
        trace.model, trace.requested_tokens = parsed.model, parsed.request.max_tokens
        # Only a well-formed request may supersede its group's previous one.
        ticket = await self.services.claim_group(scope, self.completion_route)
        try:
            await until_disconnect(
                receive,
                self._plan_and_run(parsed, trace, send),
                ticket.cancelled if ticket else None,
            )
        except Superseded:
            trace.outcome = "superseded"
            await self._send_superseded(parsed, trace, send)
        finally:
            if ticket is not None:
                self.services.supersessions.release(ticket)

    async def _plan_and_run(self, parsed: Parsed, trace: Trace, send: Send) -> None:
        translation = await self.plan(parsed, trace)
        if translation.memo is None or not await self._recall(translation, trace, send):
            await self._run(translation, trace, send)

    async def _send_superseded(self, parsed: Parsed, trace: Trace, send: Send) -> None:
        """A clean end in OpenAI's shape, with `finish_reason: "superseded"`."""
        encoder = Encoder(model=parsed.model, chat=self.chat)
        choices = [ChoiceState(i, finish_reason="superseded") for i in range(parsed.n)]
        try:
            if not parsed.stream:
                if not trace.response_started:
                    await send_json(send, 200, encoder.body(choices))
                return
            if not trace.response_started:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            events = b"".join(encoder.chunk(c.index, None, "superseded") for c in choices)
            await send(_body(events + DONE, more=False))
        except OSError:
            pass  # the client left as well

    async def _run(self, t: Translation, trace: Trace, send: Send) -> None:
        responses = await self._open_all(t.jobs, trace)
        choices = [ChoiceState(i, filter=t.rules.filter()) for i in range(len(responses))]
        try:
            if t.stream:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                if t.encoder.chat:
                    for choice in choices:
                        await send(_body(t.encoder.chunk(choice.index, "", None, role=True)))
            async with asyncio.TaskGroup() as group:
                for choice, response in zip(choices, responses, strict=True):
                    group.create_task(self._pump(choice, response, t, trace, send))
                responses = []  # each pump owns and closes its response now
        finally:
            for response in responses:
                self.services.relay.finish(response)
        trace.stage = Stage.DONE
        trace.prompt_tokens = max(c.prompt_tokens for c in choices)
        trace.generated_tokens = sum(c.completion_tokens for c in choices)
        await self._finish(t, choices, send)
        if t.memo is not None and len(choices) == 1:
            await self._remember(t.memo, choices[0])

    async def _finish(self, t: Translation, choices: list[ChoiceState], send: Send) -> None:
        if t.stream:
            await send(_body(t.encoder.tail(choices), more=False))
        else:
            await send_json(send, 200, t.encoder.body(choices))

    async def _recall(self, t: Translation, trace: Trace, send: Send) -> bool:
        """Answer from the cache, or by typing-through; False when neither has it."""
        memo, memory = t.memo, self.services.memory
        assert memo is not None
        completed, kind = None, ""
        if memo.cache_key:
            completed, kind = await memory.cached(memo.cache_key), "exact"
        if completed is None and memo.context and memo.group:
            completed = memory.typed_through(memo.group, memo.context, memo.prompt, memo.suffix)
            kind = "typing"
        if completed is None:
            return False
        self.services.metrics.cache_hits.labels(kind).inc()
        trace.outcome = "cache_hit" if kind == "exact" else "typing_through"
        trace.stage = Stage.DONE
        # The new request's own rules still apply (stops, indentation).
        rules = t.rules.filter()
        text = rules.feed(completed.text) + rules.flush()
        choice = ChoiceState(
            0,
            text=[text],
            finish_reason=completed.done_reason,
            prompt_tokens=completed.prompt_tokens,
            completion_tokens=completed.completion_tokens,
        )
        if t.stream:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send(
                _body(
                    t.encoder.chunk(0, text, None) + t.encoder.chunk(0, None, choice.finish_reason)
                )
            )
        await self._finish(t, [choice], send)
        return True

    async def _remember(self, memo: Memo, choice: ChoiceState) -> None:
        if choice.error or choice.finish_reason not in ("stop", "length"):
            return
        completed = Completed(
            "".join(choice.text),
            choice.finish_reason,
            choice.prompt_tokens,
            choice.completion_tokens,
        )
        memory = self.services.memory
        if memo.cache_key:
            await memory.store(memo.cache_key, completed)
        if memo.context and memo.group:
            memory.remember(memo.group, memo.context, memo.prompt, memo.suffix, completed)

    async def _open_all(self, jobs: list[Job], trace: Trace) -> list[UpstreamResponse]:
        """Every choice's upstream response, or none (and an error with its status)."""
        relay = self.services.relay
        opened: list[UpstreamResponse] = []
        try:
            for job in jobs:
                response = await relay.open(job, trace)
                opened.append(response)
                if response.status != 200:
                    await _raise_upstream(response)
        except BaseException:
            for response in opened:
                relay.finish(response)
            raise
        return opened

    async def _pump(
        self,
        choice: ChoiceState,
        response: UpstreamResponse,
        t: Translation,
        trace: Trace,
        send: Send,
    ) -> None:
        """Relay one choice: NDJSON lines in, filtered text out, until it finishes."""
        splitter = LineSplitter()
        error: BaseException | None = None
        try:
            async for chunk in response.chunks():
                trace.stage = Stage.STREAMING
                for line in splitter.feed(chunk):
                    trace.streamed_tokens += 1
                    await self._emit(choice, line, t, send)
                    if choice.finished:
                        return  # finally drops the connection: generation stops
            for line in splitter.flush():
                await self._emit(choice, line, t, send)
        except GatewayError as exc:
            # The backend broke mid-stream: this choice ends with an error
            # event; other choices and the response itself end cleanly.
            error = exc
            choice.error, choice.finish_reason = exc.message, "error"
            if t.stream:
                await send(_body(t.encoder.error_event(exc.message)))
        finally:
            self.services.relay.finish(response, error)

    async def _emit(
        self, choice: ChoiceState, line: dict[str, Any], t: Translation, send: Send
    ) -> None:
        text = choice.on_line(line, t.encoder.chat)
        if not t.stream:
            return
        if text:
            await send(_body(t.encoder.chunk(choice.index, text, None)))
        if choice.error:
            await send(_body(t.encoder.error_event(choice.error)))
        elif choice.finished:
            await send(_body(t.encoder.chunk(choice.index, None, choice.finish_reason)))


class CompletionsEndpoint(TranslatedEndpoint):
    """POST /v1/completions, and Copilot's /v1/engines/{engine}/completions."""

    completion_route = True

    def __init__(self, services: Services, *, copilot: bool = False) -> None:
        super().__init__(services)
        self.copilot = copilot

    def parse(self, scope: Scope, raw: bytes) -> Parsed:
        engine = scope.get("path_params", {}).get("engine") if self.copilot else None
        request = parse_completion(raw, model=engine)
        services = self.services
        model = resolve_model(
            request.model,
            "completion",
            services.settings.models,
            services.served_models(),
            strict=not self.copilot,
        )
        return Parsed(request, model, request.stream, request.n)

    async def plan(self, parsed: Parsed, trace: Trace) -> Translation:
        request, model = parsed.request, parsed.model
        assert isinstance(request, CompletionRequest)
        services = self.services
        template = None
        if request.suffix:
            template = await services.templates.template(model, services.scheduler.backends)
        plan = plan_fim(
            model,
            request.prompt,
            request.suffix,
            template,
            services.settings.models.context_tokens,
            request.max_tokens,
            overrides=services.fim_overrides,
        )
        body: dict[str, Any] = {
            "model": model,
            "prompt": plan.prompt,
            "stream": True,
            "options": ollama_options(
                request.options, request.max_tokens, (*request.stop, *plan.stop)
            ),
        }
        if plan.suffix is not None:
            body["suffix"] = plan.suffix
        if plan.raw or (plan.mode == "plain" and fim_formatted(request.prompt, plan.family)):
            # A prompt the plugin already wrapped in the model's FIM tokens
            # (Continue's and llama.vscode's OpenAI modes do) must reach the
            # model as it is, not inside its chat or instruct template.
            body["raw"] = True
        jobs = [
            _job(model, "/api/generate", body, Priority.COMPLETION, i, request.n)
            for i in range(request.n)
        ]
        rules = self._rules(request, plan.stop)
        return Translation(
            jobs,
            rules,
            self._encoder(request, model),
            request.stream,
            self._memo(request, model, body, rules, trace.group),
        )

    def _memo(
        self,
        request: CompletionRequest,
        model: str,
        body: dict[str, Any],
        rules: OutputRules,
        group: str | None,
    ) -> Memo | None:
        """Cache key and typing-through context, where the settings and request allow."""
        waste = self.services.settings.waste
        if request.n != 1:
            return None
        options = body["options"]
        cache_key = None
        if waste.cache and deterministic(options):
            cache_key = fingerprint(
                "openai",
                model,
                body.get("prompt"),
                body.get("suffix"),
                body.get("raw"),
                options,
                rules,
            )
        context = None
        if waste.typing_through and group:
            steady = {k: v for k, v in options.items() if k != "num_predict"}
            context = fingerprint("openai", model, steady, rules.stop, rules.single_line)
        return Memo(cache_key, context, group, request.prompt, request.suffix)

    def _rules(self, request: CompletionRequest, fim_stop: tuple[str, ...]) -> OutputRules:
        if self.copilot:
            return copilot_rules(
                request.prompt, request.suffix, request.stop, request.extra, fim_stop
            )
        return OutputRules(stop=(*request.stop, *fim_stop))

    def _encoder(self, request: CompletionRequest, model: str) -> Encoder:
        return Encoder(model=model, chat=False, include_usage=request.include_usage)


class ChatCompletionsEndpoint(TranslatedEndpoint):
    """POST /v1/chat/completions."""

    chat = True

    def parse(self, scope: Scope, raw: bytes) -> Parsed:
        request = parse_chat_completion(raw)
        services = self.services
        model = resolve_model(
            request.model, "chat", services.settings.models, services.served_models()
        )
        return Parsed(request, model, request.stream, 1)

    async def plan(self, parsed: Parsed, trace: Trace) -> Translation:
        request, model = parsed.request, parsed.model
        assert isinstance(request, ChatRequest)
        body = chat_body(request)
        body["model"] = model
        job = Job(model, "/api/chat", json.dumps(body).encode(), Priority.CHAT)
        encoder = Encoder(model=model, chat=True, include_usage=request.include_usage)
        return Translation([job], OutputRules(stop=request.stop), encoder, request.stream)


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


def fim_formatted(prompt: str, family: FimFamily | None) -> bool:
    """Whether `prompt` already carries `family`'s fill-in-the-middle markers."""
    if family is None:
        return False
    opening = family.template.split("{prefix}", 1)[0].strip()
    closing = family.template.rsplit("{suffix}", 1)[-1].strip()
    return bool(opening and closing) and opening in prompt and prompt.rstrip().endswith(closing)


def _job(
    model: str, path: str, body: dict[str, Any], priority: Priority, index: int, n: int
) -> Job:
    if n > 1:
        # Distinct seeds so n choices differ (when sampling is not greedy).
        options = dict(body["options"])
        options["seed"] = int(options.get("seed", 0)) + index
        body = {**body, "options": options}
    return Job(model, path, json.dumps(body).encode(), priority)


async def _raise_upstream(response: UpstreamResponse) -> None:
    """A backend's refusal as an error in our tree, so it renders in the OpenAI shape."""
    body = await response.read()
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace")
    error = GatewayError(message)
    error.status = response.status if response.status < 500 else 502
    error.kind = "invalid_request_error" if response.status < 500 else "server_error"
    error.code = "upstream_error"
    raise error


def _body(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}
