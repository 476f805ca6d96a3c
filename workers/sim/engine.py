"""Running a generation on the simulated GPU: slot, load, prefill, decode, with real sleeps.

A request's life, as in Ollama:

1. wait for a slot of its model (or 503 when the queue is full);
2. load the model if it is not resident (shared, never interrupted);
3. prefill the prompt at `prefill_tps` (never interrupted);
4. decode one token per `1 / decode_tps`, and after each token look at the
   client connection: gone means abort. This is the only place a client
   leaving changes anything.

Steps 1-3 cannot be stopped by the client, but the waste they cause is what
a gateway is judged on, so a watcher stamps *when* each waiting client left
(`Ticket.lost_at`), and prefill work done after that moment is counted as
`prompt_tokens_after_client_left`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from workers.sim import model
from workers.sim.config import SimConfig
from workers.sim.errors import ServerBusy
from workers.sim.jobs import Job
from workers.sim.slots import Residency, SlotPool
from workers.sim.stats import RequestLog, Stats

_CONTEXT_IDS = 32


class Output(Protocol):
    """Where generated text goes: a streamed response or a buffer."""

    def gone(self) -> bool:
        """Has the client connection been lost?"""

    async def send(self, text: str) -> None:
        """Deliver text; raises `ConnectionError` if the client has left."""


@dataclass(slots=True, eq=False)
class Ticket:
    """A request not yet decoding, as the connection watcher sees it."""

    gone: Callable[[], bool]
    lost_at: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a generation ended, with Ollama's final-line statistics (nanoseconds)."""

    done_reason: str
    aborted: bool
    prompt_tokens: int
    eval_count: int
    context: tuple[int, ...]
    load_ns: int
    prompt_eval_ns: int
    eval_ns: int
    total_ns: int


class Engine:
    """The simulated GPU of one worker: its slots, resident models and counters."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.models = {spec.name: spec for spec in config.models}
        self.slots = SlotPool(config.limits.parallel, config.limits.max_queue)
        self.residency = Residency()
        self.stats = Stats()
        self.log = RequestLog()
        self.closing = False  # set on shutdown: streams end at their next token
        self._tickets: set[Ticket] = set()
        self._tickets_added = asyncio.Event()
        # Fast mode serves the same tokens to everyone: nothing to draw per request.
        fast_seed = model.text_seed("ghostgate-sim-fast", "")
        self._fast_ids = list(itertools.islice(model.token_ids(fast_seed), config.fast.tokens))

    async def generate(self, job: Job, output: Output) -> Outcome:
        """Run `job`, sending its text to `output`; `ServerBusy` if it cannot even queue."""
        started = time.monotonic()
        name = job.spec.name
        total, per_model = self.stats.both(name)
        per_model.requests += 1
        ticket = Ticket(output.gone)
        self._track(ticket)
        try:
            try:
                await self.slots.acquire(name)
            except ServerBusy:
                total.rejected_busy += 1
                per_model.rejected_busy += 1
                raise
            self.stats.saw_active(self.slots.active)
            keep_alive = self._keep_alive(job)
            self.residency.enter(name, keep_alive)
            try:
                return await self._run(job, output, ticket, started)
            except asyncio.CancelledError:
                # Only a shutdown cancels a handler (handler_cancellation is off).
                total.aborted += 1
                per_model.aborted += 1
                raise
            finally:
                self.residency.leave(name, keep_alive)
                self.slots.release(name)
        finally:
            self._tickets.discard(ticket)

    async def preload(self, job: Job) -> str:
        """A request with nothing to generate: load the model, or unload it with
        keep_alive 0. Returns Ollama's done_reason for it."""
        name = job.spec.name
        if job.keep_alive == 0:
            self.residency.unload(name)
            return "unload"
        keep_alive = self._keep_alive(job)
        self.residency.enter(name, keep_alive)
        try:
            await self._load(job)
        finally:
            self.residency.leave(name, keep_alive)
        return "load"

    async def watch_clients(self) -> None:
        """Stamp the moment clients of queued, loading or prefilling requests left.

        Runs for the app's lifetime (owned by its cleanup context). It never
        interrupts anything; it only observes, so waste can be measured.
        """
        interval = self.config.watch_interval
        while True:
            if not self._tickets:
                self._tickets_added.clear()
                await self._tickets_added.wait()
            await asyncio.sleep(interval)
            now = time.monotonic()
            for ticket in self._tickets:
                if ticket.lost_at is None and ticket.gone():
                    ticket.lost_at = now

    def snapshot(self) -> dict[str, Any]:
        """`GET /sim/stats`: counters, gauges, and what is loaded."""
        return {
            "simulated": True,
            **self.stats.snapshot(),
            "active": self.slots.active,
            "queued": self.slots.queued,
            "loaded": sorted(self.residency.loaded()),
            "fast": self.config.fast.enabled,
            "parallel": self.slots.parallel,
            "max_queue": self.slots.max_queue,
        }

    def reset(self) -> None:
        """Zero the counters and forget logged requests (gauges stay true)."""
        self.stats.reset(self.slots.active)
        self.log.clear()

    async def _run(self, job: Job, output: Output, ticket: Ticket, started: float) -> Outcome:
        total, per_model = self.stats.both(job.spec.name)
        load_start = time.monotonic()
        await self._load(job)
        prefill_start = time.monotonic()
        limits = self.config.limits
        prompt_tokens = min(model.prompt_token_count(job.prompt), job.num_ctx or limits.num_ctx)
        if not self.config.fast.enabled:
            await asyncio.sleep(
                model.prefill_seconds(prompt_tokens, self.config.timing.prefill_tps)
            )
        prefill_end = time.monotonic()
        # From here on, the per-token check below sees a departure first-hand.
        self._tickets.discard(ticket)
        if ticket.lost_at is None and output.gone():
            ticket.lost_at = prefill_end
        wasted = model.prompt_tokens_after(
            prompt_tokens, prefill_start, prefill_end, ticket.lost_at
        )
        for counters in (total, per_model):
            counters.prompt_tokens += prompt_tokens
            counters.prompt_tokens_after_client_left += wasted
        reason, aborted, ids = await self._decode(job, output)
        decode_end = time.monotonic()
        for counters in (total, per_model):
            if aborted:
                counters.aborted += 1
            else:
                counters.completed += 1
        return Outcome(
            done_reason=reason,
            aborted=aborted,
            prompt_tokens=prompt_tokens,
            eval_count=len(ids),
            context=tuple(model.context_ids(model.text_seed(job.spec.name, job.prompt), ids)),
            load_ns=int((prefill_start - load_start) * model.NS),
            prompt_eval_ns=int((prefill_end - prefill_start) * model.NS),
            eval_ns=int((decode_end - prefill_end) * model.NS),
            total_ns=int((decode_end - started) * model.NS),
        )

    async def _decode(self, job: Job, output: Output) -> tuple[str, bool, list[int]]:
        """(done_reason, aborted, generated token ids)."""
        total, per_model = self.stats.both(job.spec.name)
        plan, ids, interval = self._plan(job)
        stop = model.StopFilter(job.stops)
        generated: list[int] = []
        next_at = time.monotonic()
        while len(generated) < plan.tokens:
            # Pace by deadline so per-token overhead does not slow the rate;
            # after a stall (a slow reader), restart the schedule, no burst.
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at -= delay
            await asyncio.sleep(max(delay, 0.0))
            token_id = next(ids)
            generated.append(token_id)
            total.tokens_generated += 1
            per_model.tokens_generated += 1
            if output.gone():
                # The client left while this token was being made: Ollama's
                # check between tokens, and the waste it could not avoid.
                total.tokens_after_client_left += 1
                per_model.tokens_after_client_left += 1
                return "stop", True, generated
            if self.closing:
                return "stop", True, generated  # shutting down: cut, as Ollama's exit does
            text, hit = stop.feed(model.VOCABULARY[token_id])
            if text and not await self._send(output, text):
                return "stop", True, generated
            if hit:
                return "stop", False, generated
        rest = stop.flush()
        if rest and not await self._send(output, rest):
            return "stop", True, generated
        return plan.done_reason, False, generated

    def _plan(self, job: Job) -> tuple[model.LengthPlan, Iterator[int], float]:
        limits, fast = self.config.limits, self.config.fast
        if fast.enabled:
            if job.num_predict is not None and job.num_predict > 0:
                plan = model.LengthPlan(min(job.num_predict, limits.num_predict_cap), True)
            else:
                plan = model.LengthPlan(fast.tokens, False)
            return plan, itertools.cycle(self._fast_ids), fast.interval
        seed = model.text_seed(job.spec.name, job.prompt)
        plan = model.plan_length(
            job.num_predict,
            seed,
            low=limits.min_tokens,
            high=limits.max_tokens,
            cap=limits.num_predict_cap,
        )
        return plan, model.token_ids(seed), model.decode_interval(self.config.timing.decode_tps)

    async def _load(self, job: Job) -> None:
        seconds = 0.0 if self.config.fast.enabled else self.config.timing.load_seconds
        if await self.residency.load(job.spec.name, seconds):
            for counters in self.stats.both(job.spec.name):
                counters.models_loaded += 1

    @staticmethod
    async def _send(output: Output, text: str) -> bool:
        try:
            await output.send(text)
        except ConnectionError:
            return False  # lost during the write itself; the token was made before
        return True

    def _keep_alive(self, job: Job) -> float:
        return self.config.keep_alive if job.keep_alive is None else job.keep_alive

    def _track(self, ticket: Ticket) -> None:
        self._tickets.add(ticket)
        self._tickets_added.set()
