"""Several `lq store-server` processes over one Redis namespace behave as one store."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lightning_queue import LightningStoreClient
from tests.lightning_queue.store.conftest import make_span

__all__ = ["make_span"]

ROOT = Path(__file__).parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(url: str) -> dict[str, object]:
    # A fresh connection each time, so that with --workers N the kernel may hand it to any child.
    with urllib.request.urlopen(url + "/v1/agl/health", timeout=2) as resp:
        return json.loads(resp.read())


def _serve(redis_url: str, namespace: str, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    args = ["store-server", "--port", str(port), "--workers", str(workers)]
    args += ["--redis-url", redis_url, "--namespace", namespace]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightning_queue.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            _health(url)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"lq store-server on {url} did not come up") from None
            time.sleep(0.1)


@pytest.fixture
def servers(redis_url: str) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    namespace = f"shared-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        started.append(_serve(redis_url, namespace))
        started.append(_serve(redis_url, namespace))
        yield started
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            proc.wait(timeout=15)


@pytest.mark.slow
async def test_two_servers_over_one_namespace_are_one_store(servers, make_span) -> None:
    (proc_a, url_a), (proc_b, url_b) = servers
    assert _health(url_a)["pid"] == proc_a.pid and _health(url_b)["pid"] == proc_b.pid
    a = LightningStoreClient(url_a, connect_retries=())
    b = LightningStoreClient(url_b, connect_retries=())

    async def scenario() -> None:
        queued = await a.enqueue_rollout({"q": 1})
        claimed = await b.dequeue_rollout(worker_id="w-b")
        assert claimed is not None and claimed.rollout_id == queued.rollout_id
        assert await a.dequeue_rollout(worker_id="w-a") is None, "a claimed rollout left the queue for all"
        attempt_id = claimed.attempt.attempt_id
        await a.add_span(make_span(queued.rollout_id, attempt_id, name="via-a"))
        spans = await b.query_spans(queued.rollout_id)
        assert [s.name for s in spans] == ["via-a"]
        waiting = asyncio.create_task(b.wait_for_rollouts(rollout_ids=[queued.rollout_id], timeout=20))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the wait on B returned before the rollout finished"
        await a.update_attempt(queued.rollout_id, attempt_id, status="succeeded")
        done = await waiting
        assert [r.rollout_id for r in done] == [queued.rollout_id] and done[0].status == "succeeded"

    try:
        await asyncio.wait_for(scenario(), timeout=30)
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.slow
def test_every_worker_process_answers(redis_url: str) -> None:
    namespace = f"workers-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    proc, url = _serve(redis_url, namespace, workers=2)
    try:
        pids: set[object] = set()
        deadline = time.monotonic() + 15
        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                pids |= {body["pid"] for body in pool.map(_health, [url] * 32)}
        assert len(pids) == 2 and proc.pid not in pids, f"answering processes: {pids}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
