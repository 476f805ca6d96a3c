"""The one generation flow: what every dialect's generation endpoint does, written once.

    GenerationEndpoint(services, dialect)           an ASGI endpoint
      1. read the body (bounded); the dialect parses it (`parse`); take one of
         the user's streams per choice (429 if fewer are free), given back at the end
      2. claim the request's group, superseding the group's previous request
      3. until the client leaves (ClientGone) or a newer request supersedes
         this one (Superseded), whichever comes first:
         a. the dialect plans the backend jobs and what may be remembered (`plan`)
         b. recall: an exact cache hit or typing-through answers at once, no
            backend touched (`send_recalled`)
         c. open every job's upstream (a slot each); a backend's refusal
            becomes an error of our tree (`refusal`), rendered in the dialect
         d. the dialect relays the responses as they stream (`relay`)
         e. remember the finished completion for the cache and typing-through
      4. superseded: the dialect ends the response cleanly (`send_superseded`);
         the group is released on every path

A dialect (gateway/dialects/) supplies only its parsing, its planning and its
encoding. Accounting (trace stage and outcome, cache-hit metrics) is here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from gateway.asgi import Receive, Scope, Send, Superseded, read_body, until_disconnect
from gateway.auth import Principal
from gateway.completion import Completed
from gateway.errors import GatewayError, RateLimited, UpstreamError, UpstreamRejected
from gateway.pool import Job, UpstreamResponse
from gateway.services import PRINCIPAL_KEY, Services
from gateway.trace import Stage, Trace, trace_of

R = TypeVar("R")  # a dialect's parsed request
P = TypeVar("P", bound="Plan")


@dataclass(slots=True)
class Generation(Generic[R]):
    """A parsed, checked request and what the flow needs to know of it."""

    request: R
    model: str
    stream: bool
    choices: int = 1
    requested_tokens: int = 0  # the client's token limit; 0 when it set none


@dataclass(slots=True)
class Memo:
    """Where a completion may come from, or go to, besides a backend."""

    cache_key: str | None
    context: str | None  # typing-through: what must not change between requests
    group: str | None
    prompt: str
    suffix: str


@dataclass(slots=True)
class Plan:
    """What to run upstream for one request. Dialects add how to present it."""

    jobs: Sequence[Job]
    memo: Memo | None = field(default=None, kw_only=True)


class GenerationDialect(Protocol[R, P]):
    """What a dialect supplies to the flow."""

    completion_route: bool  # implicit groups (superseding) apply

    def parse(self, scope: Scope, raw: bytes) -> Generation[R]: ...

    async def plan(self, generation: Generation[R], trace: Trace) -> P: ...

    async def send_recalled(self, plan: P, completed: Completed, send: Send) -> None: ...

    async def relay(
        self, plan: P, responses: list[UpstreamResponse], trace: Trace, send: Send
    ) -> Completed | None:
        """Relay every response to the client; the completion to remember, if any.

        The flow closes every response after (`Relay.finish` is idempotent)."""
        ...

    async def send_superseded(self, generation: Generation[R], trace: Trace, send: Send) -> None:
        """End the response cleanly: whatever was sent, the client sees an end."""
        ...


class GenerationEndpoint(Generic[R, P]):
    """POST of a generation in some dialect: the flow in the module docstring."""

    def __init__(self, services: Services, dialect: GenerationDialect[R, P]) -> None:
        self.services = services
        self.dialect = dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace = trace_of(scope)
        limits = self.services.settings.limits
        raw = await read_body(scope, receive, limits.max_body_bytes, limits.body_timeout)
        generation = self.dialect.parse(scope, raw)
        trace.model, trace.requested_tokens = generation.model, generation.requested_tokens
        user = await self._take_streams(scope, generation.choices)
        try:
            # Only a well-formed request may supersede its group's previous one.
            ticket = await self.services.claim_group(scope, self.dialect.completion_route)
            try:
                await until_disconnect(
                    receive,
                    self._run(generation, trace, send),
                    ticket.cancelled if ticket else None,
                )
            except Superseded:
                trace.outcome = "superseded"
                try:
                    await self.dialect.send_superseded(generation, trace, send)
                except OSError:
                    pass  # the client left as well
            finally:
                if ticket is not None:
                    self.services.supersessions.release(ticket)
        finally:
            if user is not None:
                # Once on every path (done, error, cancelled, superseded), and
                # shielded: the count must come back even when this task is cancelled.
                shared = self.services.shared
                await asyncio.shield(
                    shared.release_stream(user, limits.user_streams, generation.choices)
                )

    async def _take_streams(self, scope: Scope, n: int) -> str | None:
        """Count the request's `n` generations (one per choice) against its user's
        `user_streams`, all or none: the user, or None where nothing is counted.

        Here and not in UserLimits, which runs before the body says what `n` is."""
        principal = scope.get(PRINCIPAL_KEY)
        limit = self.services.settings.limits.user_streams
        if not isinstance(principal, Principal) or limit <= 0:
            return None
        if not await self.services.shared.acquire_stream(principal.subject, limit, n):
            self.services.metrics.user_limit_refusals.labels("streams").inc()
            needs = f" (this request needs {n})" if n > 1 else ""
            raise RateLimited(
                f"more than {limit} generations at once for this user{needs}", retry_after=1
            )
        return principal.subject

    async def _run(self, generation: Generation[R], trace: Trace, send: Send) -> None:
        plan = await self.dialect.plan(generation, trace)
        if plan.memo is not None:
            completed = await self._recall(plan.memo, trace)
            if completed is not None:
                await self.dialect.send_recalled(plan, completed, send)
                return
        responses = await self._open_all(plan.jobs, trace)
        relay, error = self.services.relay, None
        try:
            completed = await self.dialect.relay(plan, responses, trace, send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            for response in responses:
                relay.finish(response, error)
        if completed is not None and plan.memo is not None:
            await self._remember(plan.memo, completed)

    async def _recall(self, memo: Memo, trace: Trace) -> Completed | None:
        """An exact cache hit, else the rest of what this group was shown."""
        memory = self.services.memory
        completed, kind = None, ""
        if memo.cache_key:
            completed, kind = await memory.cached(memo.cache_key), "exact"
        if completed is None and memo.context and memo.group:
            completed = memory.typed_through(memo.group, memo.context, memo.prompt, memo.suffix)
            kind = "typing"
        if completed is None:
            return None
        self.services.metrics.cache_hits.labels(kind).inc()
        trace.outcome = "cache_hit" if kind == "exact" else "typing_through"
        trace.stage = Stage.DONE
        return completed

    async def _remember(self, memo: Memo, completed: Completed) -> None:
        memory = self.services.memory
        if memo.cache_key:
            await memory.store(memo.cache_key, completed)
        if memo.context and memo.group:
            memory.remember(memo.group, memo.context, memo.prompt, memo.suffix, completed)

    async def _open_all(self, jobs: Sequence[Job], trace: Trace) -> list[UpstreamResponse]:
        """Every job's upstream response, or none (and the refusal as our error)."""
        relay = self.services.relay
        opened: list[UpstreamResponse] = []
        try:
            for job in jobs:
                response = await relay.open(job, trace)
                opened.append(response)
                if response.status != 200:
                    raise await refusal(response)
        except BaseException:
            for response in opened:
                relay.finish(response)
            raise
        return opened


async def refusal(response: UpstreamResponse) -> GatewayError:
    """A backend's non-200 answer as an error of our tree: its 4xx keeps its status
    and message (`UpstreamRejected`), a 5xx is our 502 (`UpstreamError`)."""
    body = await response.read()
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace")
    if response.status >= 500:
        return UpstreamError(f"backend error: {message}")
    return UpstreamRejected(message, status=response.status)
