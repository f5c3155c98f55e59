"""`lq store-server` as a real process on a free loopback port, for the tests that need one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(url: str) -> dict[str, object]:
    # A fresh connection each time, so that with --workers N the kernel may hand it to any child.
    with urllib.request.urlopen(url + "/v1/agl/health", timeout=2) as resp:
        return json.loads(resp.read())


def start(redis_url: str, namespace: str, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server and wait (at most 20 s) until it answers; gives the process and its base URL."""
    port = free_port()
    args = ["store-server", "--port", str(port), "--workers", str(workers)]
    args += ["--redis-url", redis_url, "--namespace", namespace]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightning_queue.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            health(url)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=15)
                raise AssertionError(f"lq store-server on {url} did not come up") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def running(redis_url: str, namespace: str, workers: int = 1) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, url = start(redis_url, namespace, workers)
    try:
        yield proc, url
    finally:
        stop(proc)


def unique_namespace(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
