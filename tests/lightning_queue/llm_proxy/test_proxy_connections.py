"""Clients that hold connections without finishing requests: real sockets on loopback, bounded counts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy, ServerLimits
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import MODEL, ProxyFactory, client_of

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def sockets(proxy: LLMProxy, count: int, first_bytes: bytes) -> AsyncIterator[list[Streams]]:
    address = urlsplit(proxy.endpoint)
    opened: list[Streams] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(address.hostname, address.port)
            writer.write(first_bytes)
            opened.append((reader, writer))
        await asyncio.gather(*(w.drain() for _, w in opened), return_exceptions=True)
        yield opened
    finally:
        for _, writer in opened:
            writer.close()


async def health(proxy: LLMProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.endpoint}/health") as response:
        return dict(await response.json())


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(65536), 0.01) == b""
    except asyncio.TimeoutError:
        return False
    except ConnectionError:
        return True


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_half_sent_requests_are_capped_and_timed_out_and_normal_calls_go_on(
    make_proxy: ProxyFactory, attempt: AttemptedRollout, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await make_proxy(limits=ServerLimits(max_connections=50, header_timeout=2.0))
    partial = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty"

    async with sockets(proxy, 300, partial) as opened:
        started = time.monotonic()
        async with client_of(proxy, attempt) as client:
            answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        call_seconds = time.monotonic() - started
        during = await health(proxy)
        closed = [await eventually(lambda r=reader: closed_by_server(r)) for reader, _ in opened]  # type: ignore[misc]

    assert answer.choices[0].message.content == "You said: hi"
    assert call_seconds < 10  # not queued behind the half-open ones (on a loaded machine: generous)
    assert during["open_connections"] <= 50 and during["evicted_connections"] >= 250
    assert all(closed)
    assert (await health(proxy))["head_timeouts"] >= 1
    assert len(caplog.records) < 20


async def test_a_body_that_does_not_arrive_in_time_gets_408(
    make_proxy: ProxyFactory, stand_in: StandInModelServer, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(limits=ServerLimits(body_timeout=0.5))
    path = f"/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}/v1/chat/completions"

    async with sockets(proxy, 1, head(path, 1000) + b'{"model": ') as [(reader, _)]:
        answer = await asyncio.wait_for(reader.read(4096), 20)

    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in answer
    assert stand_in.requests == []


async def test_bodies_in_flight_over_the_cap_get_503_at_once(
    make_proxy: ProxyFactory, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(limits=ServerLimits(max_body_bytes_in_flight=100_000, body_timeout=30))
    path = f"/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}/v1/chat/completions"

    async with sockets(proxy, 1, head(path, 80_000) + b"{") as [(slow, _)]:
        await asyncio.sleep(0.3)  # the first body is being received
        async with sockets(proxy, 1, head(path, 80_000)) as [(second, _)]:
            answer = await asyncio.wait_for(second.read(4096), 20)
        assert not await closed_by_server(slow)

    assert answer.startswith(b"HTTP/1.1 503") and b"receiving 80000 bytes of request bodies" in answer
    async with client_of(proxy, attempt) as client:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(
    make_proxy: ProxyFactory, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(limits=ServerLimits(max_connections=3, body_timeout=30))
    path = f"/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}/v1/chat/completions"

    async with sockets(proxy, 3, head(path, 100) + b"{"):
        await asyncio.sleep(0.3)
        async with sockets(proxy, 1, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") as [(late, _)]:
            answer = await asyncio.wait_for(late.read(4096), 20)

    assert answer.startswith(b"HTTP/1.1 503") and b"connection limit" in answer
    # The busy sockets were just closed: health gets through once the proxy has seen them go.
    assert await eventually(lambda: refused_once(proxy))


async def refused_once(proxy: LLMProxy) -> bool:
    try:
        return int((await health(proxy)).get("refused_connections", 0)) >= 1
    except aiohttp.ClientError:
        return False


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


async def test_running_out_of_descriptors_logs_a_few_lines_not_a_flood(redis_url: str) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    store = RedisLightningStore(redis_url, namespace=namespace)
    async with StandInModelServer() as upstream:
        # A cap above the descriptor limit, so accept() itself fails (EMFILE), as at the review's fd limit.
        command = [sys.executable, "-m", "lightning_queue.cli", "proxy", "--redis-url", redis_url]
        command += ["--namespace", namespace, "--model", f"policy={upstream.url}", "--max-connections", "1000"]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_low_descriptor_limit
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
            endpoint = line.split(" at ", 1)[1].strip()
            address = urlsplit(endpoint)
            opened: list[asyncio.StreamWriter] = []
            for _ in range(150):
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection(address.hostname, address.port)
                    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\n")
                    opened.append(writer)
            await asyncio.sleep(3)
            for writer in opened:
                writer.close()
            attempt = await store.start_rollout(input=None)

            async def served() -> bool:
                base = f"{endpoint}/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}/v1"
                try:
                    async with AsyncOpenAI(base_url=base, api_key="x", max_retries=0, timeout=5) as client:
                        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
                except Exception:
                    return False
                return True

            recovered = await eventually(served, timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            # communicate() drains both pipes while waiting: a full pipe would block the proxy's exit.
            _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        errors = err.decode(errors="replace")
    await store.purge()
    await store.aclose()

    assert recovered
    assert "cannot accept connections" in errors and len(errors.splitlines()) < 40, errors[-3000:]


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        ServerLimits(header_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        ServerLimits(max_connections=-1)
    assert ServerLimits().max_connections >= 16


async def test_an_accept_retry_left_over_by_a_stopped_site_is_not_reported_as_a_crash() -> None:
    from lightning_queue.llm_proxy.connections import ConnectionGate

    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        undo = ConnectionGate(ServerLimits()).quiet_accept_errors(loop)
        undo()  # the site stopped: asyncio's accept retry, 1 s after an EMFILE, may still fire
        # What that retry raises on the closed socket (seen in CI as a 20-line traceback on stderr).
        late = {"message": "Exception in callback BaseSelectorEventLoop._start_serving(...)"}
        loop.call_exception_handler({**late, "exception": ValueError("Invalid file descriptor: -1")})
        other = {"message": "Exception in callback something_else()", "exception": RuntimeError("a bug")}
        loop.call_exception_handler(other)
        assert [c["message"] for c in seen] == [other["message"]]
    finally:
        loop.set_exception_handler(None)
