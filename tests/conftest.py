"""Shared fixtures: one store behaviour suite over fakeredis and a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lightning_queue import RedisLightningStore

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServerProcess:
    """A redis-server of the test's own on a free loopback port, stopped by pid."""

    def __init__(self, workdir: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"redis-{self.port}.log"
        log.unlink(missing_ok=True)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        if not any(a == "--save" for a in self.extra_args):
            args += ["--save", "", "--appendonly", "no"]
        args += ["--logfile", str(log)]
        self.proc = subprocess.Popen([*args, *self.extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The log line works for every setup (password, ACL, TLS only) where a plain PING would not.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if log.exists() and "Ready to accept connections" in log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start on port {self.port}: {output}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    """One real redis-server for the whole session (tests isolate themselves by namespace)."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH: the real-Redis half of the suite cannot run")
    server = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServerProcess) -> str:
    return redis_server.url


StoreFactory = Callable[..., RedisLightningStore]


@pytest.fixture(params=["fakeredis", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Build stores that share one backend and one fresh namespace (like several processes would)."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    made: list[RedisLightningStore] = []
    if backend == "fakeredis":
        import fakeredis

        server = fakeredis.FakeServer()

        def factory(**kwargs: Any) -> RedisLightningStore:
            kwargs.setdefault("namespace", namespace)
            kwargs.setdefault("scan_debounce_seconds", 0.0)
            store = RedisLightningStore(client_factory=lambda: fakeredis.FakeAsyncRedis(server=server), **kwargs)
            made.append(store)
            return store

    else:
        url = request.getfixturevalue("redis_url")

        def factory(**kwargs: Any) -> RedisLightningStore:
            kwargs.setdefault("namespace", namespace)
            kwargs.setdefault("scan_debounce_seconds", 0.0)
            store = RedisLightningStore(url, **kwargs)
            made.append(store)
            return store

    yield factory
    if made:
        try:
            await made[0].purge()
        finally:
            for store in made:
                await store.aclose()


@pytest.fixture
def store(make_store: StoreFactory) -> RedisLightningStore:
    return make_store()


@pytest.fixture(autouse=True)
def _no_ambient_redis_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests choose their Redis explicitly; a developer's LQ_REDIS_URL must not leak in.
    for name in ("LQ_REDIS_URL", "REDIS_URL", "LQ_NAMESPACE"):
        if name in os.environ:
            monkeypatch.delenv(name)
