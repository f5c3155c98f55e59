"""A ready algorithm's namespace gets a retention policy unless the run keeps its data (--keep-data)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from algorithms import launch
from lightning_queue import RedisLightningStore
from lightning_queue.store.retention import RetentionPolicy, read_policy, write_policy


class Stop(Exception):
    pass


@contextlib.contextmanager
def _no_server(*args: Any) -> Iterator[Any]:
    raise Stop
    yield


def _policy_after_run(redis_url: str, namespace: str, keep_data: bool) -> RetentionPolicy | None:
    with pytest.raises(Stop):
        launch.run_training(
            lambda reloader: None,  # type: ignore[arg-type,return-value]
            None,
            [],
            checkpoint_root="unused",
            redis_url=redis_url,
            namespace=namespace,
            keep_data=keep_data,
        )

    async def read() -> RetentionPolicy | None:
        store = RedisLightningStore(redis_url, namespace=namespace)
        try:
            policy = await read_policy(store)
            await store.purge()
            return policy
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_a_run_keeps_its_newest_rollouts_unless_asked_to_keep_data(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "serving", _no_server)
    monkeypatch.setattr(launch, "purge_quietly", lambda store: None)  # to look at what the run left
    assert _policy_after_run(redis_url, f"run-{uuid.uuid4().hex[:8]}", keep_data=False) == launch.RUN_RETENTION
    assert _policy_after_run(redis_url, f"run-{uuid.uuid4().hex[:8]}", keep_data=True) is None


def test_a_policy_the_user_set_is_not_replaced(redis_url: str) -> None:
    async def run() -> RetentionPolicy | None:
        store = RedisLightningStore(redis_url, namespace=f"run-{uuid.uuid4().hex[:8]}")
        try:
            mine = RetentionPolicy(max_age=86_400)
            await write_policy(store, mine)
            await launch.retain_run_data(store)
            policy = await read_policy(store)
            await store.purge()
            return policy
        finally:
            await store.aclose()

    assert asyncio.run(run()) == RetentionPolicy(max_age=86_400)
