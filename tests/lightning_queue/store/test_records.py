"""Records and ids: id prefixes, the model types reads return, and fields stored as given."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import (
    LLM,
    Attempt,
    AttemptedRollout,
    EnqueueRolloutRequest,
    PromptTemplate,
    ResourcesUpdate,
    Rollout,
    RolloutConfig,
    Span,
    Worker,
)

SpanFactory = Callable[..., Span]
CREATORS = ["enqueue_rollout", "enqueue_many_rollouts", "start_rollout"]


async def create_rollout(store: RedisLightningStore, how: str, **fields: Any) -> Rollout:
    """Create one rollout through the named API."""
    if how == "enqueue_many_rollouts":
        [rollout] = await store.enqueue_many_rollouts([EnqueueRolloutRequest(**fields)])
        return rollout
    fields.setdefault("input", "task")
    return await getattr(store, how)(**fields)


@pytest.mark.parametrize("how", CREATORS)
async def test_new_rollout_ids_start_with_ro(store: RedisLightningStore, how: str) -> None:
    first = await create_rollout(store, how)
    second = await create_rollout(store, how)

    assert first.rollout_id.startswith("ro-")
    assert second.rollout_id.startswith("ro-")
    assert first.rollout_id != second.rollout_id


async def test_new_attempt_ids_start_with_at(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    await store.enqueue_rollout("task")
    dequeued = await store.dequeue_rollout()
    retried = await store.start_attempt(started.rollout_id)

    assert dequeued is not None
    ids = [started.attempt.attempt_id, dequeued.attempt.attempt_id, retried.attempt.attempt_id]
    assert all(attempt_id.startswith("at-") for attempt_id in ids)
    assert len(set(ids)) == 3


async def test_added_resources_id_is_rs_plus_12_characters(store: RedisLightningStore) -> None:
    update = await store.add_resources({"prompt": PromptTemplate(template="{q}")})

    assert re.fullmatch(r"rs-.{12}", update.resources_id), update.resources_id


async def test_rollout_without_attempts_reads_back_as_plain_rollout(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    by_id = await store.get_rollout_by_id(queued.rollout_id)
    [queried] = await store.query_rollouts(rollout_id_in=[queued.rollout_id])

    for rollout in (queued, by_id, queried):
        assert type(rollout) is Rollout
        assert not hasattr(rollout, "attempt")


@pytest.mark.parametrize("reader", ["get_rollout_by_id", "query_rollouts"])
async def test_rollout_with_attempts_reads_back_with_its_latest_attempt(
    store: RedisLightningStore, reader: str
) -> None:
    started = await store.start_rollout("task")
    second = await store.start_attempt(started.rollout_id)

    if reader == "get_rollout_by_id":
        rollout = await store.get_rollout_by_id(started.rollout_id)
    else:
        [rollout] = await store.query_rollouts(rollout_id_in=[started.rollout_id])

    assert type(rollout) is AttemptedRollout
    assert rollout.attempt.attempt_id == second.attempt.attempt_id
    assert rollout.attempt.sequence_id == 2


async def test_reads_return_the_contract_models(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task", worker_id="worker-1")
    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))
    resources = await store.add_resources({"prompt": PromptTemplate(template="{q}")})

    attempts = await store.query_attempts(started.rollout_id)
    spans = await store.query_spans(started.rollout_id)
    workers = await store.query_workers()

    assert len(attempts) == 1 and type(attempts[0]) is Attempt
    assert type(await store.get_latest_attempt(started.rollout_id)) is Attempt
    assert len(spans) == 1 and type(spans[0]) is Span
    assert type(await store.get_resources_by_id(resources.resources_id)) is ResourcesUpdate
    assert type(await store.get_latest_resources()) is ResourcesUpdate
    assert len(workers) == 1 and type(workers[0]) is Worker
    assert type(await store.get_worker_by_id("worker-1")) is Worker


@pytest.mark.parametrize("how", CREATORS)
async def test_config_and_metadata_are_stored_as_given(store: RedisLightningStore, how: str) -> None:
    config = RolloutConfig(
        timeout_seconds=12.5, unresponsive_seconds=3.0, max_attempts=4, retry_condition=["failed", "timeout"]
    )
    metadata = {"source": "gsm8k", "tags": ["a", "b"], "nested": {"depth": 2, "ratio": 0.5}}

    created = await create_rollout(store, how, input="task", config=config, metadata=metadata)
    stored = await store.get_rollout_by_id(created.rollout_id)

    assert created.config == config
    assert created.metadata == metadata
    assert stored is not None
    assert stored.config == config
    assert stored.metadata == metadata


@pytest.mark.parametrize(
    "value",
    [
        "plain text",
        "ünïcødé ✓",
        42,
        3.25,
        True,
        None,
        [1, "two", 3.0, None],
        {"question": "2+2?", "nested": {"list": [1, 2.5, None, False], "empty": {}}},
        b"\x00raw bytes\xff",
    ],
    ids=["str", "unicode", "int", "float", "bool", "none", "list", "dict", "bytes"],
)
async def test_input_round_trips(store: RedisLightningStore, value: Any) -> None:
    created = await store.enqueue_rollout(value)
    stored = await store.get_rollout_by_id(created.rollout_id)

    assert created.input == value
    assert stored is not None
    assert stored.input == value


@pytest.mark.parametrize("how", CREATORS)
async def test_mode_and_resources_id_are_stored_as_given(store: RedisLightningStore, how: str) -> None:
    created = await create_rollout(store, how, input="task", mode="val", resources_id="rs-explicit")
    stored = await store.get_rollout_by_id(created.rollout_id)

    assert stored is not None
    assert (stored.mode, stored.resources_id) == ("val", "rs-explicit")


async def test_rollout_without_config_gets_a_default_rollout_config(store: RedisLightningStore) -> None:
    created = await store.enqueue_rollout("task")
    stored = await store.get_rollout_by_id(created.rollout_id)

    assert created.config == RolloutConfig()
    assert stored is not None
    assert stored.config == RolloutConfig()


async def test_store_default_config_applies_to_rollouts_enqueued_without_one(
    make_store: Callable[..., RedisLightningStore],
) -> None:
    default = RolloutConfig(max_attempts=3, retry_condition=["unresponsive"], unresponsive_seconds=60.0)
    explicit = RolloutConfig(max_attempts=2)
    store = make_store(default_config=default)

    without = await store.enqueue_rollout("task")
    with_config = await store.enqueue_rollout("task", config=explicit)

    assert (await store.get_rollout_by_id(without.rollout_id)).config == default
    assert (await store.get_rollout_by_id(with_config.rollout_id)).config == explicit


async def test_rollout_reads_back_equal_to_what_enqueue_returned(store: RedisLightningStore) -> None:
    created = await store.enqueue_rollout(
        {"q": 1}, mode="train", resources_id="rs-x", config=RolloutConfig(max_attempts=2), metadata={"k": "v"}
    )

    assert await store.get_rollout_by_id(created.rollout_id) == created


async def test_started_rollout_reads_back_equal_to_what_start_returned(store: RedisLightningStore) -> None:
    started = await store.start_rollout({"q": 1}, mode="test", worker_id="worker-1", metadata={"k": "v"})

    assert await store.get_rollout_by_id(started.rollout_id) == started
    assert await store.get_latest_attempt(started.rollout_id) == started.attempt


async def test_timestamps_come_from_the_process_clock(store: RedisLightningStore) -> None:
    before = time.time()
    started = await store.start_rollout("task")
    resources = await store.add_resources({"llm": LLM(endpoint="http://llm", model="m")})
    after = time.time()

    assert before <= started.start_time <= after
    assert before <= started.attempt.start_time <= after
    assert before <= resources.create_time <= after


async def test_add_span_returns_the_very_object_passed_in(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task")
    span = make_span(started.rollout_id, started.attempt.attempt_id)

    assert await store.add_span(span) is span
