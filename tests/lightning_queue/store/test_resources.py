"""Resources: versioned snapshots, the latest pointer, and the id new rollouts inherit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import LLM, EnqueueRolloutRequest, PromptTemplate, ProxyLLM, Rollout

StoreFactory = Callable[..., RedisLightningStore]


def prompt(text: str) -> dict[str, PromptTemplate]:
    return {"prompt": PromptTemplate(template=text)}


async def test_add_resources_creates_version_one_and_makes_it_latest(store: RedisLightningStore) -> None:
    before = time.time()

    added = await store.add_resources(prompt("v1"))

    assert added.version == 1
    assert added.create_time == added.update_time
    assert added.create_time >= before
    assert await store.get_resources_by_id(added.resources_id) == added
    assert await store.get_latest_resources() == added


async def test_update_resources_on_a_new_id_creates_version_one(store: RedisLightningStore) -> None:
    created = await store.update_resources("rs-custom", prompt("v1"))

    assert (created.resources_id, created.version) == ("rs-custom", 1)
    assert created.create_time == created.update_time
    assert await store.get_resources_by_id("rs-custom") == created


async def test_update_resources_on_an_existing_id_bumps_the_version(store: RedisLightningStore) -> None:
    first = await store.add_resources(prompt("v1"))

    second = await store.update_resources(first.resources_id, prompt("v2"))

    assert second.version == 2
    assert second.create_time == first.create_time
    assert second.update_time > first.update_time
    assert second.resources == prompt("v2")
    assert await store.get_resources_by_id(first.resources_id) == second


async def test_updated_resources_become_the_latest(store: RedisLightningStore) -> None:
    older = await store.add_resources(prompt("old"))
    await store.add_resources(prompt("newer"))

    updated = await store.update_resources(older.resources_id, prompt("old, updated"))

    assert await store.get_latest_resources() == updated


async def test_versions_are_counted_per_resources_id(store: RedisLightningStore) -> None:
    await store.update_resources("rs-one", prompt("a"))
    await store.update_resources("rs-one", prompt("b"))
    await store.update_resources("rs-one", prompt("c"))

    other = await store.update_resources("rs-two", prompt("x"))

    assert other.version == 1
    assert (await store.get_resources_by_id("rs-one")).version == 3


async def test_resource_subtypes_round_trip_with_their_fields(store: RedisLightningStore) -> None:
    resources = {
        "llm": LLM(endpoint="http://llm:8000/v1", model="m-1", sampling_parameters={"temperature": 0.7}),
        "proxy": ProxyLLM(endpoint="http://proxy:9000/v1", model="m-2", api_key="k"),
        "prompt": PromptTemplate(template="Solve {problem}", engine="f-string"),
    }

    added = await store.add_resources(resources)

    stored = await store.get_resources_by_id(added.resources_id)
    assert stored.resources == resources
    assert [type(resource) for resource in stored.resources.values()] == [LLM, ProxyLLM, PromptTemplate]


async def test_latest_resources_are_read_from_storage(make_store: StoreFactory) -> None:
    writer = make_store()
    added = await writer.add_resources(prompt("shared"))

    fresh = make_store()

    assert await fresh.get_latest_resources() == added


@pytest.mark.parametrize("getter", ["get_latest_resources", "get_resources_by_id"])
async def test_missing_resources_read_as_none(store: RedisLightningStore, getter: str) -> None:
    if getter == "get_latest_resources":
        assert await store.get_latest_resources() is None
    else:
        assert await store.get_resources_by_id("rs-missing") is None


@pytest.mark.parametrize("how", ["enqueue_rollout", "enqueue_many_rollouts", "start_rollout"])
async def test_new_rollout_inherits_the_latest_resources_id_at_creation(store: RedisLightningStore, how: str) -> None:
    await store.add_resources(prompt("old"))
    latest = await store.add_resources(prompt("current"))

    if how == "enqueue_many_rollouts":
        [rollout] = await store.enqueue_many_rollouts([EnqueueRolloutRequest(input="task")])
    else:
        rollout = await getattr(store, how)("task")
    await store.add_resources(prompt("later"))

    stored = await store.get_rollout_by_id(rollout.rollout_id)
    assert rollout.resources_id == latest.resources_id
    assert stored.resources_id == latest.resources_id


async def test_rollout_without_any_resources_has_no_resources_id(store: RedisLightningStore) -> None:
    rollout = await store.enqueue_rollout("task")

    assert rollout.resources_id is None


async def test_explicit_resources_id_is_kept_even_without_such_snapshot(store: RedisLightningStore) -> None:
    await store.add_resources(prompt("latest"))

    rollout: Rollout = await store.enqueue_rollout("task", resources_id="rs-does-not-exist")

    assert rollout.resources_id == "rs-does-not-exist"
    assert (await store.get_rollout_by_id(rollout.rollout_id)).resources_id == "rs-does-not-exist"


async def test_concurrent_updates_of_distinct_ids_are_all_stored(store: RedisLightningStore) -> None:
    ids = [f"rs-concurrent-{index:02d}" for index in range(50)]

    await asyncio.gather(*(store.update_resources(rid, prompt(rid)) for rid in ids))

    page = await store.query_resources(sort_by="resources_id")
    assert [update.resources_id for update in page] == ids
    for rid in ids:
        stored = await store.get_resources_by_id(rid)
        assert (stored.version, stored.resources) == (1, prompt(rid))
