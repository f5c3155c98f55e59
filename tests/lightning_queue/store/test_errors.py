"""Unknown ids: writes that need a record raise ValueError, reads give None."""

from __future__ import annotations

import re

import pytest

from lightning_queue import RedisLightningStore


async def test_update_rollout_on_an_unknown_id_raises(store: RedisLightningStore) -> None:
    with pytest.raises(ValueError, match=r"Item.*does not exist"):
        await store.update_rollout("ro-missing", status="failed")

    assert await store.get_rollout_by_id("ro-missing") is None


async def test_update_attempt_on_a_rollout_without_attempts_raises(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    with pytest.raises(ValueError, match="No attempts found"):
        await store.update_attempt(queued.rollout_id, "latest", status="running")

    assert (await store.get_rollout_by_id(queued.rollout_id)).status == "queuing"


async def test_update_attempt_on_an_unknown_attempt_raises(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    with pytest.raises(ValueError, match="at-missing"):
        await store.update_attempt(started.rollout_id, "at-missing", status="failed")

    assert (await store.get_rollout_by_id(started.rollout_id)).status == "preparing"


async def test_update_attempt_on_an_unknown_rollout_raises(store: RedisLightningStore) -> None:
    with pytest.raises(ValueError):
        await store.update_attempt("ro-missing", "latest", status="failed")


async def test_start_attempt_on_an_unknown_rollout_raises(store: RedisLightningStore) -> None:
    with pytest.raises(ValueError, match=re.escape("Rollout ro-missing not found")):
        await store.start_attempt("ro-missing", worker_id="worker-1")

    assert await store.get_worker_by_id("worker-1") is None


@pytest.mark.parametrize(
    "getter", ["get_rollout_by_id", "get_latest_attempt", "get_worker_by_id", "get_resources_by_id"]
)
async def test_reads_of_unknown_ids_return_none(store: RedisLightningStore, getter: str) -> None:
    assert await getattr(store, getter)("no-such-id") is None
