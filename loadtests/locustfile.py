"""Typing developers against a Ghostgate cluster: `locust -f loadtests/locustfile.py`.

    python run.py --multi-region &
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \\
           --headless -u 40 -r 10 -t 60s

`--host` is the router. Each user takes a token from it (`POST /v1/token` with
the API key from `GHOSTGATE_API_KEY`, else run.json in `GHOSTGATE_STATE_DIR`,
default `.ghostgate`) for a location near one of the four regions, keeps one
HTTP/2 connection to the region the router chose (`endpoints.proxy`), fetches a
new token when `refresh_in` has passed, and types in bursts (keystrokes 60-180
ms apart) and pauses (0.4-1.5 s), asking for a completion on every keystroke.
When they type on while a completion streams, their plugin resets the stream
(RST_STREAM), or, for `--lazy-share` of the users, leaves it for the gateway to
supersede.

Statistics (type, name):

    TTFT <region>         time to first token of every request that got one
    completed <region>    streams read to their end; response time = duration
    cancelled <region>    streams the developer reset by typing on
    superseded <region>   streams the gateway ended because a newer one came
    POST /v1/token        token fetches
    failed requests are failures of "TTFT <region>" with the error

HTTP/2 is spoken by Ghostgate's own client (asyncio) on one event-loop thread
per locust process; see `loadtests/typist.py` for how it meets gevent.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from typing import Any

import gevent  # type: ignore[import-untyped]
import gevent.monkey  # type: ignore[import-untyped]
from locust import User, events, task
from locust.env import Environment

from loadtests.typist import (
    CODE,
    LOCATIONS,
    MODEL,
    Attempt,
    Developer,
    Grant,
    LoopThread,
    MissingKey,
    api_key,
    fetch_grant,
    typing_burst,
)

_loop: LoopThread | None = None
_user_numbers = itertools.count()


def _arguments(parser: Any) -> None:
    parser.add_argument("--model", default=MODEL, help="model to ask for completions")
    parser.add_argument(
        "--lazy-share",
        type=float,
        default=0.25,
        help="share of users whose plugin never cancels (the gateway supersedes)",
    )


def loop_thread() -> LoopThread:
    """The process's event-loop thread, started on first use, on a native thread."""
    global _loop
    if _loop is None:
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        _loop = LoopThread(lambda run: start_new_thread(run, ()))
        _loop.start()
    return _loop


def _stop_loop(environment: Environment, **kwargs: Any) -> None:
    if _loop is not None:
        _loop.stop()


events.init_command_line_parser.add_listener(_arguments)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_stop_loop)  # type: ignore[no-untyped-call]


class TypingDeveloper(User):
    """A developer typing in an editor whose plugin asks Ghostgate for completions."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.number = next(_user_numbers)
        self.rng = random.Random(self.number)
        self.location = LOCATIONS[self.number % len(LOCATIONS)]
        options = environment.parsed_options
        model = getattr(options, "model", MODEL) if options else MODEL
        lazy_share = getattr(options, "lazy_share", 0.25) if options else 0.25
        self.cancels = self.rng.random() >= lazy_share
        self.developer = Developer(loop_thread(), f"locust-dev-{self.number}", model)
        self.key = ""
        self.grant: Grant | None = None
        self.text = ""
        self.position = self.rng.randrange(len(CODE))
        self.in_flight: list[Attempt] = []

    def on_start(self) -> None:
        try:
            self.key = api_key(os.environ)
        except MissingKey as exc:
            self._fire("POST", "/v1/token", 0.0, 0, exc)
            raise
        self.refresh_token()

    def on_stop(self) -> None:
        for attempt in self.in_flight:
            self.developer.cancel(attempt)
        deadline = time.monotonic() + 2.0
        while self.in_flight and time.monotonic() < deadline:
            gevent.sleep(0.02)
            self.report_finished()
        self.developer.close()

    @task
    def type_a_burst(self) -> None:
        """A burst of keystrokes, a completion request on each, then a pause."""
        for stroke in typing_burst(self.rng, CODE, self.position):
            self.position += 1
            self.text = (self.text + stroke.text)[-2000:]
            if self.grant is None or self.grant.due(time.monotonic()):
                self.refresh_token()
            if self.grant is None:
                gevent.sleep(1.0)
                return
            self.type_on()
            self.in_flight.append(self.developer.complete(self.grant, self.text))
            gevent.sleep(stroke.gap)
            self.report_finished()

    def type_on(self) -> None:
        """A new keystroke: a plugin that cancels resets whatever is still streaming."""
        if self.cancels:
            for attempt in self.in_flight:
                if not attempt.done and not attempt.cancel_requested:
                    self.developer.cancel(attempt)

    def refresh_token(self) -> None:
        started = time.perf_counter()
        try:
            self.grant = fetch_grant(self.host or "http://127.0.0.1:8080", self.key, self.location)
        except Exception as exc:  # any failure is a failed token request in the stats
            self._fire("POST", "/v1/token", (time.perf_counter() - started) * 1000, 0, exc)
            return
        self._fire("POST", "/v1/token", (time.perf_counter() - started) * 1000, 0)

    def report_finished(self) -> None:
        """Fire locust events for the attempts the loop thread has finished."""
        still = []
        for attempt in self.in_flight:
            if not attempt.done:
                still.append(attempt)
                continue
            if attempt.outcome == "failed":
                error = RuntimeError(attempt.error or "failed")
                self._fire("TTFT", attempt.region, attempt.duration_ms, 0, error)
                continue
            if attempt.ttft_ms is not None:
                self._fire("TTFT", attempt.region, attempt.ttft_ms, attempt.body_bytes)
            self._fire(attempt.outcome, attempt.region, attempt.duration_ms, attempt.body_bytes)
        self.in_flight = still

    def _fire(
        self,
        kind: str,
        name: str,
        response_time: float,
        length: int,
        exception: BaseException | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=response_time,
            response_length=length,
            exception=exception,
            context={"user": self.number},
        )
