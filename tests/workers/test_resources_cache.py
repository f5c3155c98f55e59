"""The worker's resources snapshots by version (`workers/resources_cache.py`), against a stand-in store."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from lightning_queue.store.leases import Claim, ResourcesRef
from lightning_queue.types import ResourcesUpdate
from workers.resources_cache import ResourcesCache


class FakeStore:
    """Snapshots by id; counts reads; `fail` makes the next read raise."""

    def __init__(self) -> None:
        self.snapshots: dict[str, ResourcesUpdate] = {}
        self.reads: list[str] = []
        self.fail = False

    def put(self, rid: str, version: int) -> ResourcesRef:
        update = ResourcesUpdate(
            resources_id=rid, create_time=1.0, update_time=float(version), version=version, resources={}
        )
        self.snapshots[rid] = update
        return ResourcesRef(rid, str(version), repr(float(version)))

    async def get_resources_by_id(self, rid: str) -> ResourcesUpdate | None:
        self.reads.append(rid)
        await asyncio.sleep(0.01)
        if self.fail:
            self.fail = False
            raise RedisConnectionError("Connection refused")
        return self.snapshots.get(rid)

    async def get_latest_resources(self) -> ResourcesUpdate | None:
        self.reads.append("<latest>")
        return None


def _claim(ref: ResourcesRef | None, pinned: str | None = None) -> Claim:
    rollout = cast(Any, type("AR", (), {"resources_id": pinned})())
    return Claim(entry_id="1-0", rollout=rollout, resources=ref)


def _cache(store: FakeStore, keep: int = 8) -> ResourcesCache:
    return ResourcesCache(cast(Any, store), keep=keep)


async def test_claims_naming_one_snapshot_share_one_read_and_later_ones_read_nothing() -> None:
    store = FakeStore()
    ref = store.put("rs-a", 1)
    cache = _cache(store)

    first = await asyncio.gather(*(cache.for_claim(_claim(ref)) for _ in range(5)))
    later = await cache.for_claim(_claim(ref))

    assert store.reads == ["rs-a"] and cache.reads == 1
    assert all(u is store.snapshots["rs-a"] for u in [*first, later])


async def test_a_new_version_is_read_and_the_oldest_snapshots_are_dropped() -> None:
    store = FakeStore()
    cache = _cache(store, keep=2)
    v1 = store.put("rs-a", 1)
    await cache.for_claim(_claim(v1))
    v2 = store.put("rs-a", 2)
    assert (await cache.for_claim(_claim(v2))).version == 2  # type: ignore[union-attr]
    b = store.put("rs-b", 1)
    await cache.for_claim(_claim(b))
    assert store.reads == ["rs-a", "rs-a", "rs-b"]
    await cache.for_claim(_claim(v1))  # dropped (keep=2): read again
    assert store.reads == ["rs-a", "rs-a", "rs-b", "rs-a"]
    with pytest.raises(ValueError, match="keep must be at least 1, got 0"):
        ResourcesCache(cast(Any, store), keep=0)


async def test_a_failed_read_is_not_kept_and_the_retry_reads_again() -> None:
    store = FakeStore()
    ref = store.put("rs-a", 1)
    store.fail = True
    cache = _cache(store)

    with pytest.raises(RedisConnectionError):
        await cache.for_claim(_claim(ref))
    assert (await cache.for_claim(_claim(ref))) is store.snapshots["rs-a"]
    assert store.reads == ["rs-a", "rs-a"]


async def test_no_resources_or_a_missing_pin_read_nothing_and_an_unknown_ref_reads_what_the_rollout_names() -> None:
    store = FakeStore()
    cache = _cache(store)

    assert await cache.for_claim(_claim(ResourcesRef("", "", ""))) is None
    assert await cache.for_claim(_claim(ResourcesRef("rs-gone", "", ""), pinned="rs-gone")) is None
    assert store.reads == []
    store.put("rs-a", 1)
    assert (await cache.for_claim(_claim(None, pinned="rs-a"))) is store.snapshots["rs-a"]
    assert await cache.for_claim(_claim(None)) is None
    assert store.reads == ["rs-a", "<latest>"]
