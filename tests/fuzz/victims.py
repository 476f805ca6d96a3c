"""Victims: streams that must arrive intact whatever the fuzzer sends beside them.

A victim asks the victim model (served by its own simulated worker, so fuzz
traffic never queues it) for a fixed number of tokens. The worker's text is
deterministic, so every victim stream must carry the same text, end with
`done: true` and `done_reason: "length"`, and have no error line.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

from gateway.http2 import H2Client, H2Error

HOST = "127.0.0.1"
VICTIM_MODEL = "victim:1b"
VICTIM_TOKENS = 64  # at 100 tokens/s: each victim stream lasts 0.64 s, across many cases
SHORT_VICTIM_TOKENS = 12  # the same-connection victim of the frame tests: 0.12 s


def victim_body(tokens: int) -> bytes:
    return json.dumps(
        {
            "model": VICTIM_MODEL,
            "prompt": "def victim(n):",
            "stream": True,
            # Not deterministic, so never answered from the completion cache.
            "options": {"num_predict": tokens, "temperature": 0.7},
        }
    ).encode()


def victim_text(body: bytes) -> tuple[str, str | None]:
    """(the streamed text, what is wrong with the stream or None)."""
    text, final = "", None
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return text, f"not JSON: {line[:120]!r}"
        if "error" in record:
            return text, f"error line: {record['error']!r}"
        text += record.get("response", "")
        final = record
    if final is None or final.get("done") is not True:
        return text, f"no final line (last: {final!r})"
    if final.get("done_reason") != "length":
        return text, f"done_reason {final.get('done_reason')!r}"
    return text, None


class Victim(threading.Thread):
    """Victim streams one after another on one HTTP/2 connection, each checked."""

    def __init__(self, name: str, port: int, token: str, reference: dict[int, str]) -> None:
        super().__init__(name=f"victim-{name}", daemon=True)
        self.target = name
        self.port = port
        self.token = token
        self.reference = reference
        self.completed = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._streams())
        except BaseException as exc:  # recorded, never raised in a thread
            self.failures.append(f"victim loop died: {exc!r}")

    async def _streams(self) -> None:
        client = H2Client(HOST, self.port)
        number = 0
        try:
            while not self._stop_event.is_set():
                number += 1
                problem = await self._one(client, number)
                if problem is None:
                    self.completed += 1
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} #{number}: {problem}")
                    await asyncio.sleep(0.2)
        finally:
            await client.close()

    async def _one(self, client: H2Client, number: int) -> str | None:
        headers = [
            ("content-type", "application/json"),
            ("authorization", f"Bearer {self.token}"),
            ("x-ghostgate-group", f"victim-{self.target}-{number}"),
            ("user-agent", "ghostgate-fuzz-victim/1"),
        ]
        try:
            stream = await asyncio.wait_for(
                client.request("POST", "/api/generate", headers, victim_body(VICTIM_TOKENS)), 15
            )
            body = await asyncio.wait_for(stream.read_all(), 15)
        except (H2Error, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if stream.status != 200:
            return f"HTTP {stream.status}: {body[:200]!r}"
        text, problem = victim_text(body)
        if problem is None and text != self.reference[VICTIM_TOKENS]:
            problem = f"text differs: {text!r}"
        return problem

    def stop(self) -> None:
        self._stop_event.set()
        self.join(20)
