"""`POST /v1/completions` and `/v1/chat/completions`: OpenAI's dialect of the
generation flow (gateway/generation.py), translated to Ollama generations.

Each request becomes one Ollama generation per choice (`n`), always streamed
upstream. Every choice runs in its own task that reads its backend's NDJSON,
filters the text (stop sequences, FIM tokens, Copilot's indentation rule) and
sends SSE events as tokens arrive. A choice that is done early (a stop
sequence, the indentation rule) closes its upstream at once, so Ollama stops
generating text nobody will see. Copilot's dialect (gateway/dialects/copilot.py)
is this one with Copilot's rules.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from gateway.asgi import Scope, Send, send_json
from gateway.completion import (
    Completed,
    FimFamily,
    OutputRules,
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
from gateway.generation import Generation, Memo, Plan
from gateway.pool import Job, Priority, UpstreamResponse
from gateway.services import Services
from gateway.trace import Stage, Trace

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


def _start_sse() -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS}


@dataclass(slots=True)
class Translation(Plan):
    """The jobs, and how to present what they generate."""

    rules: OutputRules
    encoder: Encoder
    stream: bool


class TranslatedGeneration:
    """What the OpenAI completion and chat dialects share: relaying choices as SSE."""

    chat = False
    completion_route = False

    def __init__(self, services: Services) -> None:
        self.services = services

    async def send_recalled(self, t: Translation, completed: Completed, send: Send) -> None:
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
            await send(_start_sse())
            events = t.encoder.chunk(0, text, None) + t.encoder.chunk(0, None, choice.finish_reason)
            await send(_body(events))
        await self._finish(t, [choice], send)

    async def relay(
        self, t: Translation, responses: list[UpstreamResponse], trace: Trace, send: Send
    ) -> Completed | None:
        choices = [ChoiceState(i, filter=t.rules.filter()) for i in range(len(responses))]
        if t.stream:
            await send(_start_sse())
            if t.encoder.chat:
                for choice in choices:
                    await send(_body(t.encoder.chunk(choice.index, "", None, role=True)))
        async with asyncio.TaskGroup() as group:
            for choice, response in zip(choices, responses, strict=True):
                group.create_task(self._pump(choice, response, t, trace, send))
        trace.stage = Stage.DONE
        trace.prompt_tokens = max(c.prompt_tokens for c in choices)
        trace.generated_tokens = sum(c.completion_tokens for c in choices)
        await self._finish(t, choices, send)
        return _completed(choices)

    async def send_superseded(self, generation: Generation[Any], trace: Trace, send: Send) -> None:
        """A clean end in OpenAI's shape, with `finish_reason: "superseded"`."""
        encoder = Encoder(model=generation.model, chat=self.chat)
        choices = [ChoiceState(i, finish_reason="superseded") for i in range(generation.choices)]
        if not generation.stream:
            if not trace.response_started:
                await send_json(send, 200, encoder.body(choices))
            return
        if not trace.response_started:
            await send(_start_sse())
        events = b"".join(encoder.chunk(c.index, None, "superseded") for c in choices)
        await send(_body(events + DONE, more=False))

    async def _finish(self, t: Translation, choices: list[ChoiceState], send: Send) -> None:
        if t.stream:
            await send(_body(t.encoder.tail(choices), more=False))
        else:
            await send_json(send, 200, t.encoder.body(choices))

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


class CompletionsGeneration(TranslatedGeneration):
    """POST /v1/completions (`prompt` + `suffix`: fill-in-the-middle)."""

    completion_route = True
    strict_model = True  # an unknown model is a 404 (Copilot maps any engine instead)

    def parse(self, scope: Scope, raw: bytes) -> Generation[CompletionRequest]:
        limits = self.services.settings.limits
        request = parse_completion(raw, model=self._model_override(scope), limits=limits)
        services = self.services
        model = resolve_model(
            request.model,
            "completion",
            services.settings.models,
            services.served_models(),
            strict=self.strict_model,
        )
        return Generation(request, model, request.stream, request.n, request.max_tokens)

    async def plan(self, generation: Generation[CompletionRequest], trace: Trace) -> Translation:
        request, model = generation.request, generation.model
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
        rules = self._rules(request, plan.stop)
        return Translation(
            choice_jobs(model, "/api/generate", body, Priority.COMPLETION, request.n),
            rules,
            Encoder(model=model, chat=False, include_usage=request.include_usage),
            request.stream,
            memo=self._memo(request, model, body, rules, trace.group),
        )

    def _model_override(self, scope: Scope) -> str | None:
        return None

    def _rules(self, request: CompletionRequest, fim_stop: tuple[str, ...]) -> OutputRules:
        return OutputRules(stop=(*request.stop, *fim_stop))

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
        if cache_key is None and context is None:
            return None
        return Memo(cache_key, context, group, request.prompt, request.suffix)


class ChatGeneration(TranslatedGeneration):
    """POST /v1/chat/completions."""

    chat = True

    def parse(self, scope: Scope, raw: bytes) -> Generation[ChatRequest]:
        request = parse_chat_completion(raw, self.services.settings.limits)
        services = self.services
        model = resolve_model(
            request.model, "chat", services.settings.models, services.served_models()
        )
        return Generation(request, model, request.stream, 1, request.max_tokens)

    async def plan(self, generation: Generation[ChatRequest], trace: Trace) -> Translation:
        request, model = generation.request, generation.model
        body = chat_body(request)
        body["model"] = model
        job = Job(model, "/api/chat", json.dumps(body).encode(), Priority.CHAT)
        encoder = Encoder(model=model, chat=True, include_usage=request.include_usage)
        return Translation([job], OutputRules(stop=request.stop), encoder, request.stream)


def choice_jobs(
    model: str, path: str, body: dict[str, Any], priority: Priority, n: int
) -> list[Job]:
    """One job per choice. With a client's `seed`, choice i gets `seed + i`, so the
    n choices differ and stay reproducible; without one, each backend generation
    draws its own seed, as Ollama does for any request."""
    seed = body["options"].get("seed")
    jobs = []
    for index in range(n):
        choice_body = body
        if n > 1 and seed is not None:
            choice_body = {**body, "options": {**body["options"], "seed": int(seed) + index}}
        jobs.append(Job(model, path, json.dumps(choice_body).encode(), priority))
    return jobs


def fim_formatted(prompt: str, family: FimFamily | None) -> bool:
    """Whether `prompt` already carries `family`'s fill-in-the-middle markers."""
    if family is None:
        return False
    opening = family.template.split("{prefix}", 1)[0].strip()
    closing = family.template.rsplit("{suffix}", 1)[-1].strip()
    return bool(opening and closing) and opening in prompt and prompt.rstrip().endswith(closing)


def _completed(choices: list[ChoiceState]) -> Completed | None:
    """What the cache and typing-through may keep: one choice that ended well."""
    if len(choices) != 1:
        return None
    choice = choices[0]
    if choice.error or choice.finish_reason not in ("stop", "length"):
        return None
    return Completed(
        "".join(choice.text), choice.finish_reason, choice.prompt_tokens, choice.completion_tokens
    )


def _body(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}
