"""A store used in a process forked from its owner: the child gets connections of its own, never its parent's."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable

from lightning_queue import RedisLightningStore


def in_child(body: Callable[[], int], timeout: float = 20.0) -> int:
    """Fork, run `body` in the child (its return value is the exit code), return the child's exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal_alarm(timeout)
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def signal_alarm(seconds: float) -> None:
    import signal

    signal.alarm(max(1, int(seconds)))  # a child stuck on a lock dies (SIGALRM) instead of hanging the test


def test_child_on_the_parents_loop_gets_a_fresh_connection_and_leaves_the_parents_alone(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace=f"f-{uuid.uuid4().hex[:8]}", lease_seconds=None)
    loop = asyncio.new_event_loop()

    async def client_id() -> int:
        return int(await store._redis.client_id())

    try:
        parent_id = loop.run_until_complete(client_id())

        def child() -> int:
            # The loop the parent's client belongs to, as when a forked child unwinds through the worker.
            child_id = loop.run_until_complete(client_id())
            loop.run_until_complete(store.aclose())
            return 0 if child_id != parent_id else 3

        assert in_child(child) == 0, "the child used its parent's connection"
        assert loop.run_until_complete(client_id()) == parent_id
        assert loop.run_until_complete(store.ping())
    finally:
        loop.run_until_complete(store.aclose())
        loop.close()


def test_child_forked_while_another_thread_held_the_stores_lock_can_use_the_store(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace=f"f-{uuid.uuid4().hex[:8]}", lease_seconds=None)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        # As a worker's lease thread looking up its client at the moment an agent forks.
        with store._clients._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        code = in_child(lambda: 0 if asyncio.run(store.ping()) else 4, timeout=5)
    finally:
        release.set()
        thread.join()
    assert code == 0, f"the child could not use the store (exit code {code})"
