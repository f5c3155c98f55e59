"""`InMemoryLightningStore` (the Redis store on a private in-process server) and `close()` on every store.

The rest of the store suite runs on it too (the `in_memory` backend of this folder's conftest)."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

from lightning_queue.store import InMemoryLightningStore, LightningStore, RedisLightningStore


async def test_close_releases_the_connection_and_the_store_still_works_after(store: RedisLightningStore) -> None:
    rollout = await store.enqueue_rollout({"q": 1})
    await store.close()
    assert store._clients.pop() is None  # the running loop's client is gone
    assert (await store.get_rollout_by_id(rollout.rollout_id)).input == {"q": 1}
    await store.close()


async def test_the_abstract_store_has_close_too() -> None:
    await LightningStore().close()  # nothing to release, and no error


async def test_in_memory_stores_need_no_server_and_keep_to_themselves() -> None:
    one, other = InMemoryLightningStore(), InMemoryLightningStore()
    await one.enqueue_rollout({"q": 1})
    assert len(await one.query_rollouts()) == 1
    assert await other.query_rollouts() == []
    assert one.url is None and "InMemoryLightningStore" in repr(one)
    await one.close()
    await other.close()


async def test_every_thread_and_event_loop_sees_the_same_in_memory_data() -> None:
    store = InMemoryLightningStore()
    queued = await store.enqueue_rollout({"q": 1})
    seen: list[Any] = []

    def elsewhere() -> None:
        async def claim() -> None:
            seen.append(await store.dequeue_rollout(worker_id="thread-worker"))
            await store.close()

        asyncio.run(claim())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    [claimed] = seen
    assert claimed.rollout_id == queued.rollout_id
    assert (await store.get_rollout_by_id(queued.rollout_id)).status == "preparing"
    await store.close()


def test_in_memory_store_takes_the_redis_store_options_but_no_server() -> None:
    store = InMemoryLightningStore(namespace="debug", lease_seconds=5.0, max_input_bytes=100)
    assert (store.namespace, store.lease_seconds, store.max_input_bytes) == ("debug", 5.0, 100)
    # Agent-Lightning scripts pass thread_safe; every Redis store is.
    assert InMemoryLightningStore(thread_safe=False).capabilities["thread_safe"] is True
    with pytest.raises(TypeError, match="thread_safe must be a bool"):
        InMemoryLightningStore(thread_safe="yes")  # type: ignore[arg-type]
    for taken in ("url", "client_factory"):
        with pytest.raises(TypeError, match=f"takes no '{taken}'"):
            InMemoryLightningStore(**{taken: "redis://127.0.0.1:6379/0"})


def test_without_fakeredis_the_in_memory_store_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fakeredis", None)
    with pytest.raises(RuntimeError, match=r"lightning-queue\[embedded\]"):
        InMemoryLightningStore()


async def test_the_in_memory_store_enforces_the_same_limits_as_redis() -> None:
    store = InMemoryLightningStore(max_input_bytes=64)
    with pytest.raises(ValueError, match="input"):
        await store.enqueue_rollout({"big": "x" * 1000})
    await store.close()


async def test_the_in_memory_backend_of_the_suite_is_the_in_memory_store(
    store: RedisLightningStore, backend: str
) -> None:
    # Guards the claim that the whole behaviour suite runs on InMemoryLightningStore.
    assert isinstance(store, InMemoryLightningStore) == (backend == "in_memory")
