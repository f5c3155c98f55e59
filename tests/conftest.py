"""Shared fixtures: one store behaviour suite over fakeredis and a real redis-server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess
from tests.support.stores import StoreFactory


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

    elif backend == "in_memory":
        from lightning_queue.store import InMemoryLightningStore

        def factory(**kwargs: Any) -> RedisLightningStore:
            kwargs.setdefault("namespace", namespace)
            kwargs.setdefault("scan_debounce_seconds", 0.0)
            if made:
                # Later stores stand for other clients of the first one's private server.
                store = RedisLightningStore(client_factory=made[0]._factory, **kwargs)
            else:
                store = InMemoryLightningStore(**kwargs)
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
