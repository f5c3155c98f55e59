"""Queries: paging, sorting and filtering of rollouts, attempts, spans, workers and resources."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import PaginatedResult, PromptTemplate, Span

SpanFactory = Callable[..., Span]
Query = Callable[..., Awaitable[PaginatedResult[Any]]]

# Each kind of record with the field that identifies it.
KINDS = {
    "rollouts": "rollout_id",
    "attempts": "sequence_id",
    "spans": "span_id",
    "workers": "worker_id",
    "resources": "resources_id",
}


async def populate(store: RedisLightningStore, kind: str, make_span: SpanFactory) -> Query:
    """Create five records of `kind` and return the query method that lists them."""
    if kind == "rollouts":
        for index in range(5):
            await store.enqueue_rollout({"index": index})
        return store.query_rollouts
    if kind == "attempts":
        started = await store.start_rollout("task")
        for _ in range(4):
            await store.start_attempt(started.rollout_id)
        return functools.partial(store.query_attempts, started.rollout_id)
    if kind == "spans":
        started = await store.start_rollout("task")
        for sequence_id, span_id in enumerate(["s-c", "s-a", "s-e", "s-b", "s-d"], start=1):
            await store.add_span(
                make_span(started.rollout_id, started.attempt.attempt_id, sequence_id, span_id=span_id)
            )
        return functools.partial(store.query_spans, started.rollout_id)
    if kind == "workers":
        for name in ["w-c", "w-a", "w-e", "w-b", "w-d"]:
            await store.update_worker(name, heartbeat_stats={})
        return store.query_workers
    for name in ["rs-c", "rs-a", "rs-e", "rs-b", "rs-d"]:
        await store.update_resources(name, {"prompt": PromptTemplate(template=name)})
    return store.query_resources


def keys(items: PaginatedResult[Any], field: str) -> list[Any]:
    return [getattr(item, field) for item in items]


# --- paging and sorting, for every kind of record ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_query_page_reports_limit_offset_and_total(
    store: RedisLightningStore, make_span: SpanFactory, kind: str
) -> None:
    query = await populate(store, kind, make_span)
    field = KINDS[kind]
    everything = sorted(keys(await query(), field))

    page = await query(sort_by=field, limit=2, offset=1)

    assert isinstance(page, PaginatedResult)
    assert (page.limit, page.offset, page.total) == (2, 1, 5)
    assert keys(page, field) == everything[1:3]


@pytest.mark.parametrize("kind", KINDS)
async def test_limit_minus_one_returns_every_record(
    store: RedisLightningStore, make_span: SpanFactory, kind: str
) -> None:
    query = await populate(store, kind, make_span)

    page = await query(limit=-1)

    assert (len(page), page.total) == (5, 5)


@pytest.mark.parametrize("kind", KINDS)
async def test_limit_zero_returns_nothing_but_still_counts(
    store: RedisLightningStore, make_span: SpanFactory, kind: str
) -> None:
    query = await populate(store, kind, make_span)

    page = await query(limit=0)

    assert (len(page), page.total) == (0, 5)


@pytest.mark.parametrize("kind", KINDS)
async def test_offset_past_the_end_returns_nothing(
    store: RedisLightningStore, make_span: SpanFactory, kind: str
) -> None:
    query = await populate(store, kind, make_span)

    page = await query(limit=2, offset=10)

    assert (len(page), page.total) == (0, 5)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("kind", KINDS)
async def test_sort_by_id_field_in_either_order(
    store: RedisLightningStore, make_span: SpanFactory, kind: str, order: str
) -> None:
    query = await populate(store, kind, make_span)
    field = KINDS[kind]

    page = await query(sort_by=field, sort_order=order)

    assert keys(page, field) == sorted(keys(page, field), reverse=order == "desc")
    assert len(page) == 5


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_rollouts_sort_by_start_time(store: RedisLightningStore, order: str) -> None:
    created = [await store.enqueue_rollout({"index": index}) for index in range(4)]
    expected = [rollout.rollout_id for rollout in created]

    page = await store.query_rollouts(sort_by="start_time", sort_order=order)

    assert keys(page, "rollout_id") == (expected if order == "asc" else expected[::-1])


async def test_filter_happens_before_sorting_and_paging(store: RedisLightningStore) -> None:
    created = [await store.enqueue_rollout({"index": index}) for index in range(6)]
    failed = sorted(rollout.rollout_id for rollout in created[::2])
    for rollout_id in failed:
        await store.update_rollout(rollout_id, status="failed")

    page = await store.query_rollouts(status_in=["failed"], sort_by="rollout_id", sort_order="desc", limit=2)

    assert keys(page, "rollout_id") == failed[::-1][:2]
    assert page.total == 3


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("kind", ["rollout mode", "attempt worker_id", "span parent_id"])
async def test_none_sorts_first_ascending_and_last_descending(
    store: RedisLightningStore, make_span: SpanFactory, kind: str, order: str
) -> None:
    if kind == "rollout mode":
        for mode in ["val", None, "train"]:
            await store.enqueue_rollout("task", mode=mode)
        page = await store.query_rollouts(sort_by="mode", sort_order=order)
        values = keys(page, "mode")
        expected: list[Any] = [None, "train", "val"]
    elif kind == "attempt worker_id":
        started = await store.start_rollout("task", worker_id="w-b")
        await store.start_attempt(started.rollout_id)
        await store.start_attempt(started.rollout_id, worker_id="w-a")
        page = await store.query_attempts(started.rollout_id, sort_by="worker_id", sort_order=order)  # type: ignore[assignment]
        values = keys(page, "worker_id")
        expected = [None, "w-a", "w-b"]
    else:
        started = await store.start_rollout("task")
        for sequence_id, parent_id in enumerate(["p-b", None, "p-a"], start=1):
            await store.add_span(
                make_span(started.rollout_id, started.attempt.attempt_id, sequence_id, parent_id=parent_id)
            )
        page = await store.query_spans(started.rollout_id, sort_by="parent_id", sort_order=order)  # type: ignore[assignment]
        values = keys(page, "parent_id")
        expected = [None, "p-a", "p-b"]

    assert values == (expected if order == "asc" else expected[::-1])


# --- rollout filters --------------------------------------------------------------------------------


async def three_rollouts(store: RedisLightningStore) -> list[str]:
    """Rollout ids of a queuing, a failed and a succeeded rollout, in that order."""
    ids = [(await store.enqueue_rollout({"index": index})).rollout_id for index in range(3)]
    await store.update_rollout(ids[1], status="failed")
    await store.update_rollout(ids[2], status="succeeded")
    return ids


async def test_status_in_selects_rollouts_by_status(store: RedisLightningStore) -> None:
    _, failed, succeeded = await three_rollouts(store)

    page = await store.query_rollouts(status_in=["failed", "succeeded"])

    assert set(keys(page, "rollout_id")) == {failed, succeeded}


async def test_rollout_id_in_selects_the_given_rollouts(store: RedisLightningStore) -> None:
    queuing, failed, _ = await three_rollouts(store)

    page = await store.query_rollouts(rollout_id_in=[queuing, failed, "ro-missing"])

    assert set(keys(page, "rollout_id")) == {queuing, failed}


async def test_rollout_id_contains_matches_substrings(store: RedisLightningStore) -> None:
    _, failed, _ = await three_rollouts(store)

    page = await store.query_rollouts(rollout_id_contains=failed[-8:])

    assert keys(page, "rollout_id") == [failed]


@pytest.mark.parametrize(("legacy", "new"), [("status", "status_in"), ("rollout_ids", "rollout_id_in")])
async def test_legacy_filter_names_alias_the_new_ones(store: RedisLightningStore, legacy: str, new: str) -> None:
    _, failed, _ = await three_rollouts(store)
    value = ["failed"] if legacy == "status" else [failed]

    via_legacy = await store.query_rollouts(**{legacy: value})
    via_new = await store.query_rollouts(**{new: value})

    assert keys(via_legacy, "rollout_id") == keys(via_new, "rollout_id") == [failed]


@pytest.mark.parametrize(("legacy", "new"), [("status", "status_in"), ("rollout_ids", "rollout_id_in")])
async def test_new_filter_names_win_over_legacy_ones(store: RedisLightningStore, legacy: str, new: str) -> None:
    queuing, failed, _ = await three_rollouts(store)
    values = {"status": ["queuing"], "status_in": ["failed"], "rollout_ids": [queuing], "rollout_id_in": [failed]}

    page = await store.query_rollouts(**{legacy: values[legacy], new: values[new]})

    assert keys(page, "rollout_id") == [failed]


@pytest.mark.parametrize("name", ["status_in", "status"])
async def test_empty_status_list_matches_nothing(store: RedisLightningStore, name: str) -> None:
    await three_rollouts(store)

    page = await store.query_rollouts(**{name: []})

    assert (len(page), page.total) == (0, 0)


async def test_filter_logic_and_intersects_rollout_filters(store: RedisLightningStore) -> None:
    queuing, failed, _ = await three_rollouts(store)

    matching = await store.query_rollouts(status_in=["failed"], rollout_id_in=[queuing, failed])
    disjoint = await store.query_rollouts(status_in=["failed"], rollout_id_contains=queuing[-8:])

    assert keys(matching, "rollout_id") == [failed]
    assert list(disjoint) == []


async def test_filter_logic_or_unites_rollout_filters(store: RedisLightningStore) -> None:
    queuing, failed, _ = await three_rollouts(store)

    page = await store.query_rollouts(status_in=["failed"], rollout_id_contains=queuing[-8:], filter_logic="or")

    assert set(keys(page, "rollout_id")) == {queuing, failed}
    assert page.total == 2


# --- span filters -----------------------------------------------------------------------------------

SPAN_FIELDS = ["trace_id", "span_id", "parent_id", "name"]


async def spans_with(store: RedisLightningStore, make_span: SpanFactory, field: str) -> str:
    """A rollout with three spans whose `field` is alpha-1, alpha-2 and beta-1; returns its id."""
    started = await store.start_rollout("task")
    for sequence_id, value in enumerate(["alpha-1", "alpha-2", "beta-1"], start=1):
        await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id, sequence_id, **{field: value}))
    return started.rollout_id


@pytest.mark.parametrize("field", SPAN_FIELDS)
async def test_span_exact_filter_matches_whole_values(
    store: RedisLightningStore, make_span: SpanFactory, field: str
) -> None:
    rollout_id = await spans_with(store, make_span, field)

    page = await store.query_spans(rollout_id, **{field: "alpha-1"})

    assert keys(page, field) == ["alpha-1"]


@pytest.mark.parametrize("field", SPAN_FIELDS)
async def test_span_contains_filter_matches_substrings(
    store: RedisLightningStore, make_span: SpanFactory, field: str
) -> None:
    rollout_id = await spans_with(store, make_span, field)

    page = await store.query_spans(rollout_id, **{f"{field}_contains": "alpha"})

    assert keys(page, field) == ["alpha-1", "alpha-2"]


async def test_span_filters_with_or_are_a_union(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    await store.add_span(make_span(rid, aid, 1, name="llm", span_id="s-1"))
    await store.add_span(make_span(rid, aid, 2, name="tool", span_id="s-2"))
    await store.add_span(make_span(rid, aid, 3, name="reward", span_id="s-3"))

    both = await store.query_spans(rid, name="llm", span_id="s-2", filter_logic="or")
    neither = await store.query_spans(rid, name="llm", span_id="s-2")

    assert keys(both, "span_id") == ["s-1", "s-2"]
    assert list(neither) == []


async def test_span_rollout_scope_applies_even_with_or(store: RedisLightningStore, make_span: SpanFactory) -> None:
    one = await store.start_rollout("one")
    two = await store.start_rollout("two")
    await store.add_span(make_span(one.rollout_id, one.attempt.attempt_id, 1, name="llm"))
    await store.add_span(make_span(two.rollout_id, two.attempt.attempt_id, 1, name="llm"))

    page = await store.query_spans(one.rollout_id, name="llm", span_id_contains="no-such", filter_logic="or")

    assert keys(page, "rollout_id") == [one.rollout_id]


async def test_span_attempt_scope_applies_even_with_or(store: RedisLightningStore, make_span: SpanFactory) -> None:
    first = await store.start_rollout("task")
    second = await store.start_attempt(first.rollout_id)
    await store.add_span(make_span(first.rollout_id, first.attempt.attempt_id, 1, name="llm"))
    await store.add_span(make_span(first.rollout_id, second.attempt.attempt_id, 2, name="llm"))

    page = await store.query_spans(
        first.rollout_id, first.attempt.attempt_id, name="llm", trace_id_contains="no-such", filter_logic="or"
    )

    assert keys(page, "attempt_id") == [first.attempt.attempt_id]


@pytest.mark.parametrize(("attempt_id", "expected"), [("latest", ["second"]), (None, ["first", "second"])])
async def test_query_spans_attempt_scope(
    store: RedisLightningStore, make_span: SpanFactory, attempt_id: str | None, expected: list[str]
) -> None:
    first = await store.start_rollout("task")
    second = await store.start_attempt(first.rollout_id)
    await store.add_span(make_span(first.rollout_id, first.attempt.attempt_id, 1, name="first"))
    await store.add_span(make_span(first.rollout_id, second.attempt.attempt_id, 2, name="second"))

    page = await store.query_spans(first.rollout_id, attempt_id)

    assert keys(page, "name") == expected


async def test_query_spans_orders_by_sequence_id_by_default(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task")
    for sequence_id in [3, 1, 2]:
        await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id, sequence_id))

    page = await store.query_spans(started.rollout_id)

    assert keys(page, "sequence_id") == [1, 2, 3]


# --- worker and resources filters ------------------------------------------------------------------


async def three_workers(store: RedisLightningStore) -> None:
    """gpu-1 busy, gpu-2 idle, cpu-1 unknown."""
    await store.start_rollout("task", worker_id="gpu-1")
    finished = await store.start_rollout("task", worker_id="gpu-2")
    await store.update_attempt(finished.rollout_id, "latest", status="succeeded")
    await store.update_worker("cpu-1", heartbeat_stats={})


async def test_worker_status_in_selects_by_status(store: RedisLightningStore) -> None:
    await three_workers(store)

    page = await store.query_workers(status_in=["busy", "unknown"], sort_by="worker_id")

    assert keys(page, "worker_id") == ["cpu-1", "gpu-1"]


async def test_worker_id_contains_matches_substrings(store: RedisLightningStore) -> None:
    await three_workers(store)

    page = await store.query_workers(worker_id_contains="gpu", sort_by="worker_id")

    assert keys(page, "worker_id") == ["gpu-1", "gpu-2"]


@pytest.mark.parametrize(("logic", "expected"), [("and", ["gpu-2"]), ("or", ["cpu-1", "gpu-1", "gpu-2"])])
async def test_worker_filter_logic_combines_filters(
    store: RedisLightningStore, logic: str, expected: list[str]
) -> None:
    await three_workers(store)

    page = await store.query_workers(
        status_in=["idle", "unknown"], worker_id_contains="gpu", filter_logic=logic, sort_by="worker_id"
    )

    assert keys(page, "worker_id") == expected


@pytest.mark.parametrize(
    ("exact", "contains", "expected"),
    [("rs-a", "rs", ["rs-a"]), ("rs-a", "other", []), (None, "rs-", ["rs-a", "rs-b"]), ("other-c", None, ["other-c"])],
)
async def test_resources_exact_and_contains_filters_are_combined_with_and(
    store: RedisLightningStore, exact: str | None, contains: str | None, expected: list[str]
) -> None:
    for name in ["rs-a", "rs-b", "other-c"]:
        await store.update_resources(name, {"prompt": PromptTemplate(template=name)})

    page = await store.query_resources(resources_id=exact, resources_id_contains=contains, sort_by="resources_id")

    assert keys(page, "resources_id") == expected
