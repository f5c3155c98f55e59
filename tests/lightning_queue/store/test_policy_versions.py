"""Issue 17: the namespace's policy version, stamped on resources updates and on the attempts that run under them."""

from __future__ import annotations

import asyncio

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store.client import LightningStoreClient
from lightning_queue.store.errors import NotSupported
from lightning_queue.types import PromptTemplate


def prompt(text: str) -> dict[str, PromptTemplate]:
    return {"prompt": PromptTemplate(template=text)}


async def test_policy_version_is_zero_before_any_resources(store: RedisLightningStore) -> None:
    assert await store.policy_version() == 0


async def test_every_resources_update_raises_the_policy_version_by_one(store: RedisLightningStore) -> None:
    first = await store.add_resources(prompt("a"))
    again = await store.update_resources(first.resources_id, prompt("a2"))
    other = await store.update_resources("rs-other", prompt("b"))
    upsert = await store.add_resources("rs-other", prompt("b2"))

    assert [r.policy_version for r in (first, again, other, upsert)] == [1, 2, 3, 4]
    # The per-id `version` is Agent-Lightning's contract and stays per id.
    assert [r.version for r in (first, again, other, upsert)] == [1, 2, 1, 2]
    assert await store.policy_version() == 4
    stored = await store.get_resources_by_id(first.resources_id)
    assert stored is not None and stored.policy_version == 2


async def test_concurrent_updates_get_distinct_versions(store: RedisLightningStore) -> None:
    updates = await asyncio.gather(*(store.update_resources(f"rs-{i % 3}", prompt(str(i))) for i in range(30)))

    assert sorted(u.policy_version or 0 for u in updates) == list(range(1, 31))
    assert await store.policy_version() == 30


async def test_the_attempt_records_the_version_of_its_pinned_resources(store: RedisLightningStore) -> None:
    old = await store.add_resources(prompt("old"))
    pinned = await store.enqueue_rollout({"q": 1}, resources_id=old.resources_id)
    await store.add_resources(prompt("new"))  # the latest is now version 2; the pin stays on `old`
    unpinned = await store.enqueue_rollout({"q": 2})  # pins the latest at creation

    claimed = await store.dequeue_many_rollouts(limit=2)

    versions = {r.rollout_id: r.attempt.policy_version for r in claimed}
    assert versions == {pinned.rollout_id: 1, unpinned.rollout_id: 2}
    attempt = await store.get_latest_attempt(pinned.rollout_id)
    assert attempt is not None and attempt.policy_version == 1


async def test_a_pin_follows_updates_of_its_resources_id(store: RedisLightningStore) -> None:
    await store.update_resources("main", prompt("v1"))
    rollout = await store.enqueue_rollout({"q": 1}, resources_id="main")
    await store.update_resources("main", prompt("v2"))

    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == rollout.rollout_id
    assert claimed.attempt.policy_version == 2


async def test_retries_and_leased_claims_are_stamped_with_the_version_at_their_claim(
    store: RedisLightningStore,
) -> None:
    await store.update_resources("main", prompt("v1"))
    rollout = await store.enqueue_rollout({"q": 1}, resources_id="main")
    [claim] = await store.claim(consumer="w1", worker_id="w1")
    assert claim.rollout.attempt.policy_version == 1
    await store.update_resources("main", prompt("v2"))

    retry = await store.start_attempt(rollout.rollout_id)

    assert retry.attempt.policy_version == 2


async def test_without_resources_an_attempt_has_no_policy_version(store: RedisLightningStore) -> None:
    await store.enqueue_rollout({"q": 1})
    started = await store.start_rollout({"q": 2})

    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.attempt.policy_version is None
    assert started.attempt.policy_version is None


async def test_a_store_without_the_feature_says_so_naming_its_class() -> None:
    client = LightningStoreClient("http://127.0.0.1:9")

    with pytest.raises(NotSupported, match="LightningStoreClient does not support policy_version"):
        await client.policy_version()
    with pytest.raises(NotImplementedError, match="LightningStoreClient does not support pause_claims"):
        async with client.claims_pause(5):
            pass
