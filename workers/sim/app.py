"""The simulated worker's HTTP API: Ollama's routes plus `/sim/*`, on aiohttp.web (HTTP/1.1).

Streaming follows Ollama: status and headers go out with the first token (so
errors before it, such as a full queue, still get their own status), then one
NDJSON line per token, each written to the socket as soon as it exists.
aiohttp does not cancel a handler when its client disconnects (and must not
here: `handler_cancellation` stays off); the engine looks at the connection
between tokens instead, exactly where Ollama looks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from workers.sim import wire
from workers.sim.catalog import ps_entry, show_payload, tags_entry
from workers.sim.config import SimConfig
from workers.sim.engine import Engine, Outcome
from workers.sim.errors import SimError
from workers.sim.jobs import Job, find_model, parse_body, parse_chat, parse_generate
from workers.sim.stats import CloseLog

ENGINE = web.AppKey("engine", Engine)
MODIFIED_AT = web.AppKey("modified_at", str)
CLOSES = web.AppKey("closes", CloseLog)
# Ollama takes prompts as long as a model's context; 1 MiB (aiohttp's default) is too little.
MAX_BODY = 64 * 1024 * 1024
CLIENT_CLOSED = 499  # nginx's "client closed request", for the access log only


def client_gone(request: web.BaseRequest) -> bool:
    """Has the connection this request came on been lost (or is it closing)?"""
    transport = request.transport
    return transport is None or transport.is_closing()


class StreamOutput:
    """NDJSON to the client, one socket write per token."""

    __slots__ = ("_encoder", "_request", "response")

    def __init__(self, request: web.Request, encoder: wire.LineEncoder) -> None:
        self._request = request
        self._encoder = encoder
        self.response: web.StreamResponse | None = None

    def gone(self) -> bool:
        return client_gone(self._request)

    async def send(self, text: str) -> None:
        response = self.response or await self._start()
        await response.write(self._encoder.token(text))

    async def finish(self, last_line: bytes) -> web.StreamResponse:
        response = self.response or await self._start()
        await response.write(last_line)
        await response.write_eof()
        return response

    async def _start(self) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(self._request)
        self.response = response
        return response


class BufferOutput:
    """Text collected for a `stream: false` answer; the client is still watched."""

    __slots__ = ("_parts", "_request")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._parts: list[str] = []

    def gone(self) -> bool:
        return client_gone(self._request)

    async def send(self, text: str) -> None:
        self._parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self._parts)


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=wire.go_json(body), status=status, content_type="application/json", charset="utf-8"
    )


def error_response(error: SimError) -> web.Response:
    return json_response({"error": error.message}, error.status)


async def generate(request: web.Request) -> web.StreamResponse:
    return await _generation(request, "generate")


async def chat(request: web.Request) -> web.StreamResponse:
    return await _generation(request, "chat")


async def _generation(request: web.Request, route: str) -> web.StreamResponse:
    engine = request.app[ENGINE]
    entry = engine.log.open(request.path)
    engine.stats.total.requests += 1
    try:
        body = parse_body(await request.read())
        job = (parse_generate if route == "generate" else parse_chat)(body, engine.models)
    except SimError as exc:
        engine.stats.total.errors += 1
        entry["status"] = exc.status
        return error_response(exc)
    entry.update(
        model=job.model,
        prompt=job.prompt,
        raw=job.raw,
        suffix=job.suffix,
        options=dict(job.options or {}),
        stream=job.stream,
    )
    if job.preload:
        entry["done_reason"] = reason = await engine.preload(job)
        entry["status"] = 200
        return json_response(wire.preloaded(route, job.model, reason))
    output: StreamOutput | BufferOutput
    if job.stream:
        output = StreamOutput(request, wire.LineEncoder(route, job.model))
    else:
        output = BufferOutput(request)
    closes = request.app[CLOSES]
    closes.watch(request.protocol, job.prompt)
    try:
        outcome = await engine.generate(job, output)
    except SimError as exc:
        entry["status"] = exc.status
        return error_response(exc)
    finally:
        closes.unwatch(request.protocol)
    entry.update(done_reason=outcome.done_reason, aborted=outcome.aborted)
    if outcome.aborted and engine.closing and request.transport is not None:
        # Shutting down: drop the connection mid-stream, as a dying Ollama
        # does, rather than end the body cleanly without its done line.
        request.transport.close()
    entry["status"] = CLIENT_CLOSED if outcome.aborted else 200
    return await _answer(job, outcome, output)


async def _answer(
    job: Job, outcome: Outcome, output: StreamOutput | BufferOutput
) -> web.StreamResponse:
    if isinstance(output, BufferOutput):
        if outcome.aborted:
            return web.Response(status=CLIENT_CLOSED)  # nobody reads it; aiohttp copes
        return json_response(wire.final(job.route, job.model, output.text, outcome))
    if not outcome.aborted:
        last = wire.go_json(wire.final(job.route, job.model, "", outcome)) + b"\n"
        with contextlib.suppress(ConnectionError):  # gone after its last token: nothing to do
            return await output.finish(last)
    # Nobody is listening; aiohttp swallows the write errors of whatever is returned.
    return output.response or web.Response(status=CLIENT_CLOSED)


async def tags(request: web.Request) -> web.Response:
    engine, modified_at = request.app[ENGINE], request.app[MODIFIED_AT]
    return json_response({"models": [tags_entry(m, modified_at) for m in engine.models.values()]})


async def ps(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    models = [
        ps_entry(engine.models[name], wire.expiry_timestamp(seconds), engine.config.limits.num_ctx)
        for name, seconds in sorted(engine.residency.loaded().items())
    ]
    return json_response({"models": models})


async def show(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        _, spec = find_model(parse_body(await request.read()), engine.models)
    except SimError as exc:
        return error_response(exc)
    return json_response(show_payload(spec, request.app[MODIFIED_AT]))


async def version(request: web.Request) -> web.Response:
    return json_response({"version": request.app[ENGINE].config.version})


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def sim_stats(request: web.Request) -> web.Response:
    return json_response(request.app[ENGINE].snapshot())


async def sim_reset(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    engine.reset()
    request.app[CLOSES].clear()
    return json_response(engine.snapshot())


async def sim_closes(request: web.Request) -> web.Response:
    """When clients' connections closed mid-generation (time.monotonic(), by prompt)."""
    return json_response({"closes": request.app[CLOSES].snapshot()})


async def sim_requests(request: web.Request) -> web.Response:
    return json_response({"requests": request.app[ENGINE].log.snapshot()})


async def _label_simulated(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Ollama-Simulated"] = "1"


async def _stop_generating(app: web.Application) -> None:
    # Like Ollama on SIGTERM: streams in flight are cut at their next token
    # instead of running on for the whole shutdown grace period.
    app[ENGINE].closing = True


async def _client_watcher(app: web.Application) -> AsyncIterator[None]:
    """Owns the engine's connection watcher for the app's lifetime."""
    task = asyncio.create_task(app[ENGINE].watch_clients())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(config: SimConfig) -> web.Application:
    """The aiohttp application of one simulated worker."""
    app = web.Application(client_max_size=MAX_BODY)
    app[ENGINE] = Engine(config)
    app[MODIFIED_AT] = wire.timestamp()
    app[CLOSES] = CloseLog()
    app.on_response_prepare.append(_label_simulated)
    app.cleanup_ctx.append(_client_watcher)
    app.on_shutdown.append(_stop_generating)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/show", show)
    app.router.add_get("/api/version", version)
    app.router.add_get("/", root)  # HEAD / too: aiohttp adds HEAD to GET routes
    app.router.add_get("/sim/stats", sim_stats)
    app.router.add_post("/sim/reset", sim_reset)
    app.router.add_get("/sim/requests", sim_requests)
    app.router.add_get("/sim/closes", sim_closes)
    return app


async def start_server(config: SimConfig, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner (clean up to stop) and the base URL, real port included."""
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=config.shutdown_timeout)
    await runner.setup()
    _stamp_closes(runner, app[CLOSES])
    try:
        # Ollama (Go) listens with the kernel's somaxconn; aiohttp's default of
        # 128 makes a burst of new connections wait a second for a SYN retry.
        site = web.TCPSite(runner, host, port, backlog=4096)
        await site.start()
        bound_port = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound_port}"


def _stamp_closes(runner: web.AppRunner, closes: CloseLog) -> None:
    """Tell `closes` the moment a connection is lost: aiohttp's server hears it
    first (`connection_lost`), before the engine looks at the next token."""
    server = runner.server
    assert server is not None
    original = server.connection_lost

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        closes.lost(handler)
        original(handler, exc)

    server.connection_lost = connection_lost  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def run_sim(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve a simulated worker in this event loop; yields its base URL.

    async with run_sim(SimConfig(limits=Limits(parallel=1)), port=0) as url:
        ...
    """
    runner, url = await start_server(config or SimConfig(), host, port)
    try:
        yield url
    finally:
        await runner.cleanup()
