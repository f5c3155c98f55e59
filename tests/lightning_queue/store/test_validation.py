"""Bad arguments raise ValueError/TypeError naming the bad value, before anything is written."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import EnqueueRolloutRequest, PromptTemplate, Span

StoreFactory = Callable[..., RedisLightningStore]
SpanFactory = Callable[..., Span]
BAD_ARGUMENT = (ValueError, TypeError)


async def query_of(store: RedisLightningStore, kind: str) -> Callable[..., Awaitable[Any]]:
    """The query method of `kind`, bound to an existing rollout where it needs one."""
    if kind in ("attempts", "spans"):
        started = await store.start_rollout("task")
        method = store.query_attempts if kind == "attempts" else store.query_spans
        return functools.partial(method, started.rollout_id)
    return {  # type: ignore[return-value]
        "rollouts": store.query_rollouts,
        "workers": store.query_workers,
        "resources": store.query_resources,
    }[kind]


QUERY_KINDS = ["rollouts", "attempts", "spans", "workers", "resources"]


@pytest.mark.parametrize("kind", QUERY_KINDS)
async def test_negative_limit_other_than_minus_one_is_rejected(store: RedisLightningStore, kind: str) -> None:
    query = await query_of(store, kind)

    with pytest.raises(BAD_ARGUMENT, match="-2"):
        await query(limit=-2)


@pytest.mark.parametrize("kind", QUERY_KINDS)
async def test_negative_offset_is_rejected(store: RedisLightningStore, kind: str) -> None:
    query = await query_of(store, kind)

    with pytest.raises(BAD_ARGUMENT, match="-3"):
        await query(offset=-3)


@pytest.mark.parametrize("kind", QUERY_KINDS)
async def test_unknown_sort_field_is_rejected(store: RedisLightningStore, kind: str) -> None:
    query = await query_of(store, kind)

    with pytest.raises(BAD_ARGUMENT, match="no_such_field"):
        await query(sort_by="no_such_field")


@pytest.mark.parametrize("kind", ["rollouts", "spans", "workers"])
async def test_unknown_filter_logic_is_rejected(store: RedisLightningStore, kind: str) -> None:
    query = await query_of(store, kind)

    with pytest.raises(BAD_ARGUMENT, match="xor"):
        await query(filter_logic="xor")


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.query_rollouts(status_in=["bogus-status"]),
        lambda store: store.query_rollouts(status=["bogus-status"]),
        lambda store: store.query_workers(status_in=["bogus-status"]),
    ],
    ids=["query_rollouts status_in", "query_rollouts status", "query_workers status_in"],
)
async def test_unknown_status_in_a_filter_is_rejected(
    store: RedisLightningStore, call: Callable[[RedisLightningStore], Awaitable[Any]]
) -> None:
    with pytest.raises(BAD_ARGUMENT, match="bogus-status"):
        await call(store)


async def test_unknown_rollout_status_is_rejected_without_change(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    with pytest.raises(BAD_ARGUMENT, match="bogus-status"):
        await store.update_rollout(queued.rollout_id, status="bogus-status", metadata={"changed": True})

    assert await store.get_rollout_by_id(queued.rollout_id) == queued


async def test_unknown_attempt_status_is_rejected_without_change(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    with pytest.raises(BAD_ARGUMENT, match="bogus-status"):
        await store.update_attempt(started.rollout_id, "latest", status="bogus-status", metadata={"changed": True})

    assert await store.get_rollout_by_id(started.rollout_id) == started


UNSERIALISABLE = [
    pytest.param(object(), "object", id="object"),
    pytest.param({1, 2}, "set", id="set"),
    # msgpack packs it, but its array key cannot be a Python dict key on the way back.
    pytest.param({(1, 2): "x"}, "does not read back", id="tuple-keyed dict"),
]
CREATORS: dict[str, Callable[[RedisLightningStore, Any], Awaitable[Any]]] = {
    "enqueue_rollout input": lambda store, bad: store.enqueue_rollout(bad),
    "start_rollout input": lambda store, bad: store.start_rollout(bad, worker_id="worker-1"),
    "enqueue_many_rollouts input": lambda store, bad: store.enqueue_many_rollouts(
        [EnqueueRolloutRequest(input="fine"), EnqueueRolloutRequest(input=bad)]
    ),
    "enqueue_rollout metadata": lambda store, bad: store.enqueue_rollout("task", metadata={"bad": bad}),
}


@pytest.mark.parametrize(("bad", "type_name"), UNSERIALISABLE)
@pytest.mark.parametrize("how", CREATORS)
async def test_unserialisable_rollout_is_rejected_before_anything_is_written(
    store: RedisLightningStore, how: str, bad: Any, type_name: str
) -> None:
    with pytest.raises(BAD_ARGUMENT, match=type_name):
        await CREATORS[how](store, bad)

    assert (await store.query_rollouts()).total == 0
    assert await store.queue_depth() == 0
    assert (await store.statistics())["total_attempts"] == 0
    assert await store.get_worker_by_id("worker-1") is None


@pytest.mark.parametrize(("bad", "type_name"), UNSERIALISABLE)
async def test_unserialisable_update_of_a_rollout_leaves_it_unchanged(
    store: RedisLightningStore, bad: Any, type_name: str
) -> None:
    queued = await store.enqueue_rollout({"kept": True})

    with pytest.raises(BAD_ARGUMENT, match=type_name):
        await store.update_rollout(queued.rollout_id, input=bad, status="running")

    assert await store.get_rollout_by_id(queued.rollout_id) == queued


@pytest.mark.parametrize(("bad", "type_name"), UNSERIALISABLE)
async def test_unserialisable_attempt_metadata_leaves_the_attempt_unchanged(
    store: RedisLightningStore, bad: Any, type_name: str
) -> None:
    started = await store.start_rollout("task")

    with pytest.raises(BAD_ARGUMENT, match=type_name):
        await store.update_attempt(started.rollout_id, "latest", status="succeeded", metadata={"bad": bad})

    assert await store.get_rollout_by_id(started.rollout_id) == started


@pytest.mark.parametrize(("bad", "type_name"), UNSERIALISABLE)
async def test_unserialisable_heartbeat_stats_are_rejected(
    store: RedisLightningStore, bad: Any, type_name: str
) -> None:
    with pytest.raises(BAD_ARGUMENT, match=type_name):
        await store.update_worker("worker-1", heartbeat_stats={"bad": bad})

    assert await store.get_worker_by_id("worker-1") is None


@pytest.mark.parametrize(("bad", "type_name"), UNSERIALISABLE)
async def test_unserialisable_span_is_rejected_before_it_counts_as_a_heartbeat(
    store: RedisLightningStore, make_span: SpanFactory, bad: Any, type_name: str
) -> None:
    started = await store.start_rollout("task")

    with pytest.raises(BAD_ARGUMENT, match=type_name):
        await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id, attributes={"bad": bad}))

    assert await store.query_spans(started.rollout_id) == []
    assert await store.get_rollout_by_id(started.rollout_id) == started


async def test_oversized_input_is_rejected(make_store: StoreFactory) -> None:
    store = make_store(max_input_bytes=1024)

    with pytest.raises(ValueError, match="1024"):
        await store.enqueue_rollout("x" * 4096)

    assert (await store.query_rollouts()).total == 0
    assert await store.queue_depth() == 0


async def test_input_within_the_size_limit_is_accepted(make_store: StoreFactory) -> None:
    store = make_store(max_input_bytes=1024)

    queued = await store.enqueue_rollout("x" * 512)

    assert (await store.get_rollout_by_id(queued.rollout_id)).input == "x" * 512


async def test_oversized_span_is_rejected(make_store: StoreFactory, make_span: SpanFactory) -> None:
    store = make_store(max_span_bytes=2048)
    started = await store.start_rollout("task")

    with pytest.raises(ValueError, match="2048"):
        await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id, attributes={"blob": "x" * 8192}))

    assert await store.query_spans(started.rollout_id) == []


async def test_oversized_resources_are_rejected(make_store: StoreFactory) -> None:
    store = make_store(max_resources_bytes=1024)

    with pytest.raises(ValueError, match="1024"):
        await store.add_resources({"prompt": PromptTemplate(template="x" * 4096)})

    assert await store.get_latest_resources() is None


# Metadata and heartbeat stats read back as dict[str, Any]: a non-string key would be stored, then
# make every read of the record fail.
NOT_STR_KEYED = {1: "one"}
NOT_READABLE_BACK: dict[str, Callable[[RedisLightningStore, Any], Awaitable[Any]]] = {
    "enqueue_rollout metadata": lambda store, started: store.enqueue_rollout("task", metadata=NOT_STR_KEYED),
    "start_rollout metadata": lambda store, started: store.start_rollout("task", metadata=NOT_STR_KEYED),
    "enqueue_many_rollouts metadata": lambda store, started: store.enqueue_many_rollouts(
        [EnqueueRolloutRequest(input="fine"), EnqueueRolloutRequest.model_construct(input="x", metadata=NOT_STR_KEYED)]
    ),
    "update_rollout metadata": lambda store, started: store.update_rollout(
        started.rollout_id, metadata=NOT_STR_KEYED, status="failed"
    ),
    "update_attempt metadata": lambda store, started: store.update_attempt(
        started.rollout_id, "latest", status="failed", metadata=NOT_STR_KEYED
    ),
    "update_worker heartbeat_stats": lambda store, started: store.update_worker(
        "worker-2", heartbeat_stats=NOT_STR_KEYED
    ),
    "release metadata": lambda store, started: store.release(
        started.rollout_id, started.attempt.attempt_id, metadata=NOT_STR_KEYED
    ),
}


@pytest.mark.parametrize("write", NOT_READABLE_BACK)
async def test_a_record_that_would_not_read_back_is_refused_and_nothing_changes(
    store: RedisLightningStore, write: str
) -> None:
    started = await store.start_rollout("task")
    before = await store.query_rollouts()

    with pytest.raises(BAD_ARGUMENT, match="does not read back"):
        await NOT_READABLE_BACK[write](store, started)

    assert await store.query_rollouts() == before
    assert await store.get_rollout_by_id(started.rollout_id) == started
    assert await store.get_worker_by_id("worker-2") is None


async def test_a_batch_with_one_record_that_would_not_read_back_stores_none_of_it(store: RedisLightningStore) -> None:
    batch = [EnqueueRolloutRequest(input={"n": n}) for n in range(3)] + [EnqueueRolloutRequest(input={(1, 2): "x"})]

    with pytest.raises(TypeError, match=r"does not read back.*\(1, 2\)"):
        await store.enqueue_many_rollouts(batch)

    assert (await store.query_rollouts()).total == 0
    assert await store.queue_depth() == 0
    assert (await store.statistics())["total_rollouts"] == 0


async def test_ids_that_would_spell_an_index_key_are_refused_by_name(store: RedisLightningStore) -> None:
    # `res:idx` / `wk:idx` are the resources and workers indexes: these ids would overwrite them.
    await store.update_resources("policy", {"p": PromptTemplate(template="x", engine="f-string")})
    with pytest.raises(ValueError, match=r"'idx'.*reserved"):
        await store.update_resources("idx", {"p": PromptTemplate(template="y", engine="f-string")})
    with pytest.raises(ValueError, match=r"'idx'.*reserved"):
        await store.update_worker("idx", {"cpu": 1})
    with pytest.raises(ValueError, match=r"'idx'.*reserved"):
        await store.dequeue_rollout(worker_id="idx")
    assert await store.get_resources_by_id("idx") is None
    assert await store.get_worker_by_id("idx") is None
    # The indexes are intact: listings still work.
    assert [r.resources_id for r in await store.query_resources()] == ["policy"]
    assert (await store.get_latest_resources()).resources_id == "policy"  # type: ignore[union-attr]
    assert len(await store.query_workers()) == 0
