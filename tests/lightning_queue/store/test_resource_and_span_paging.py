"""query_resources and filtered query_spans: random histories, then every paged query equals the
contract's sort-and-page over a full scan of the records (not of an index), with and without the
indexes a namespace written by an older version lacks."""

from __future__ import annotations

import random
import types
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store import codec, schema, transitions
from lightning_queue.store.query import sort_and_page
from lightning_queue.types import PromptTemplate, ResourcesUpdate, Span
from tests.support.round_trips import RoundTrips
from tests.support.stores import StoreFactory

RESOURCE_QUERIES: list[dict[str, Any]] = [
    {},
    {"sort_order": "desc"},
    {"sort_by": "create_time"},
    {"sort_by": "create_time", "sort_order": "desc"},
    {"sort_by": "update_time"},
    {"sort_by": "update_time", "sort_order": "desc"},
    {"sort_by": "version", "sort_order": "desc"},
    {"sort_by": "resources_id"},
    {"resources_id_contains": "1"},
    {"resources_id_contains": "1", "sort_order": "desc"},
    {"resources_id_contains": "2", "sort_by": "create_time"},
    {"resources_id_contains": "-", "sort_by": "update_time", "sort_order": "desc"},
    {"resources_id_contains": "nothing-has-this"},
    {"resources_id": "v3"},
    {"resources_id": "v3", "resources_id_contains": "3"},
    {"resources_id": "v3", "resources_id_contains": "x"},
    {"resources_id": "no-such-id"},
    {"resources_id": "bad:id"},
]


def _pages(rng: random.Random, n: int) -> list[tuple[int, int]]:
    return [(-1, 0), (1, 0), (3, rng.randrange(0, n + 2)), (5, rng.randrange(0, n + 2)), (0, 0), (2, n), (2, n - 1)]


async def _scanned_resources(store: RedisLightningStore) -> list[ResourcesUpdate]:
    """Every snapshot from a SCAN of the hashes, in the listing's default order (create_time, id)."""
    pattern = store.keys.prefix + schema.KEY_RESOURCES + "*"
    found = []
    async for raw in store._redis.scan_iter(match=pattern, count=500):
        key = raw.decode()
        if key == store.keys.resources_index:
            continue
        found.append(codec.resources_from_fields(codec.hash_fields(await store._redis.hgetall(key), key=key), key=key))
    return sorted(found, key=lambda r: (r.create_time, r.resources_id))


async def assert_resource_queries_match_scan(store: RedisLightningStore, rng: random.Random) -> None:
    every = await _scanned_resources(store)
    for query in RESOURCE_QUERIES:
        exact, contains = query.get("resources_id"), query.get("resources_id_contains")
        candidates = [
            r
            for r in every
            if (exact is None or r.resources_id == exact) and (contains is None or contains in r.resources_id)
        ]
        for limit, offset in _pages(rng, len(every)):
            expected = sort_and_page(
                candidates,
                sort_by=query.get("sort_by"),
                sort_order=query.get("sort_order", "asc"),
                limit=limit,
                offset=offset,
            )
            got = await store.query_resources(**query, limit=limit, offset=offset)
            assert (got.total, got.limit, got.offset) == (expected.total, limit, offset), (query, limit, offset)
            assert got.items == expected.items, (query, limit, offset)


class Clock:
    """The scripts' NOW: the wall clock, or a frozen instant (updates sharing it make the ties)."""

    def __init__(self) -> None:
        self.frozen: float | None = None

    def time(self) -> float:
        import time

        return time.time() if self.frozen is None else self.frozen


async def _random_resources(store: RedisLightningStore, rng: random.Random, clock: Clock, steps: int) -> None:
    """Adds and upserts on a coarse clock that also steps back (processes' clocks differ): many ties."""
    pool = ["v1", "v2", "v3", "default", "rs-12", "rs-21"]
    for step in range(steps):
        clock.frozen = 1_000_000.0 + rng.randrange(0, 6)
        prompt = {"prompt": PromptTemplate(template=f"t{step}", engine="f-string")}
        if rng.random() < 0.4:
            await store.add_resources(prompt)
        else:
            await store.update_resources(rng.choice(pool), prompt)


@pytest.mark.parametrize("seed", [1, 2])
async def test_resource_pages_equal_a_full_scan_after_random_updates(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    clock = Clock()
    monkeypatch.setattr(transitions, "time", types.SimpleNamespace(time=clock.time))
    rng = random.Random(seed)
    for _ in range(3):
        await _random_resources(store, rng, clock, 12)
        every = await _scanned_resources(store)
        # The indexes score exactly the fields they order by.
        created = dict(await store._redis.zrange(store.keys.resources_created, 0, -1, withscores=True))
        updated = dict(await store._redis.zrange(store.keys.resources_index, 0, -1, withscores=True))
        assert created == {r.resources_id.encode(): r.create_time for r in every}
        assert updated == {r.resources_id.encode(): r.update_time for r in every}
        assert len({r.create_time for r in every}) < len(every), "the history must hold create_time ties"
        await assert_resource_queries_match_scan(store, rng)


async def test_resources_written_before_the_creation_index_are_listed_by_scan_until_healed(
    store: RedisLightningStore,
) -> None:
    rng = random.Random(7)
    for name in ["v3", "rs-1", "v1", "rs-2", "default"]:
        await store.update_resources(name, {"prompt": PromptTemplate(template=name, engine="f-string")})
    await store._redis.delete(store.keys.resources_created)
    await assert_resource_queries_match_scan(store, rng)
    # A later update puts its snapshot in the index; the others are still missing, so the scan goes on.
    await store.update_resources("v1", {"prompt": PromptTemplate(template="again", engine="f-string")})
    assert await store._redis.zcard(store.keys.resources_created) == 1
    await assert_resource_queries_match_scan(store, rng)
    for name in ["v3", "rs-1", "rs-2", "default"]:
        await store.update_resources(name, {"prompt": PromptTemplate(template="healed", engine="f-string")})
    every = await _scanned_resources(store)
    created = dict(await store._redis.zrange(store.keys.resources_created, 0, -1, withscores=True))
    assert created == {r.resources_id.encode(): r.create_time for r in every}
    await assert_resource_queries_match_scan(store, rng)


async def test_a_page_of_resources_decodes_only_its_snapshots(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O(page), not O(N): the catch of a full read coming back."""
    for n in range(30):
        await store.add_resources({"prompt": PromptTemplate(template=str(n), engine="f-string")})
    decoded: list[str] = []
    original = codec.resources_from_fields

    def counting(fields: dict[str, Any], *, key: str) -> ResourcesUpdate:
        decoded.append(key)
        return original(fields, key=key)

    monkeypatch.setattr(codec, "resources_from_fields", counting)
    every = await _scanned_resources(store)
    for query in (
        {},
        {"sort_order": "desc"},
        {"sort_by": "create_time", "sort_order": "desc"},
        {"sort_by": "update_time"},
    ):
        decoded.clear()
        page = await store.query_resources(**query, limit=2, offset=5)
        expected = sort_and_page(
            every, limit=2, offset=5, sort_by=query.get("sort_by"), sort_order=query.get("sort_order", "asc")
        )
        assert page.total == 30 and page.items == expected.items, query
        assert len(decoded) == 2, (query, decoded)
    decoded.clear()
    one = await store.query_resources(resources_id=every[3].resources_id)
    assert one.items == [every[3]] and one.total == 1 and len(decoded) == 1


async def test_resources_updated_at_one_instant_are_ordered_by_creation(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ids updated at one instant: by update_time they go in creation order (stable sort), not id order."""
    clock = Clock()
    monkeypatch.setattr(transitions, "time", types.SimpleNamespace(time=clock.time))
    prompt = {"prompt": PromptTemplate(template="p", engine="f-string")}
    clock.frozen = 1000.0
    await store.update_resources("zz", prompt)
    clock.frozen = 1001.0
    await store.update_resources("aa", prompt)
    clock.frozen = 2000.0
    await store.update_resources("zz", prompt)
    await store.update_resources("aa", prompt)
    by_update = await store.query_resources(sort_by="update_time")
    assert [r.resources_id for r in by_update] == ["zz", "aa"]
    assert [r.update_time for r in by_update] == [2000.0, 2000.0]
    newest = await store.query_resources(sort_by="update_time", sort_order="desc", limit=1)
    assert [r.resources_id for r in newest] == ["zz"] and newest.total == 2


# --- spans --------------------------------------------------------------------------------------

SPAN_QUERIES: list[dict[str, Any]] = [
    {},
    {"sort_order": "desc"},
    {"sort_by": None, "sort_order": "desc"},
    {"name": "llm"},
    {"name": "llm", "sort_order": "desc"},
    {"name_contains": "o"},
    {"name_contains": ""},
    {"name": "tool", "span_id_contains": "1", "filter_logic": "or"},
    {"name": "tool", "span_id_contains": "1"},
    {"trace_id": "tr-0"},
    {"trace_id_contains": "1", "parent_id": "sp-0"},
    {"parent_id_contains": "sp"},
    {"sort_by": "name"},
    {"sort_by": "span_id", "sort_order": "desc"},
    {"sort_by": "parent_id", "name_contains": "l"},
    {"sort_by": "start_time", "sort_order": "desc"},
    {"name": "no-such-name"},
]


def _matches(s: Span, query: dict[str, Any]) -> bool:
    verdicts = []
    for field in ("trace_id", "span_id", "parent_id", "name"):
        value = getattr(s, field)
        if query.get(field) is not None:
            verdicts.append(value == query[field])
        if query.get(field + "_contains") is not None:
            verdicts.append(value is not None and query[field + "_contains"] in value)
    if not verdicts:
        return True
    return all(verdicts) if query.get("filter_logic", "and") == "and" else any(verdicts)


async def _scanned_spans(store: RedisLightningStore, rid: str) -> list[Span]:
    """Every span of the trace from HGETALL, in the store's base order: sequence id, then span id."""
    stored = await store._redis.hgetall(store.keys.spans(rid))
    return sorted(
        (codec.span_from_blob(blob, key="") for blob in stored.values()), key=lambda s: (s.sequence_id, s.span_id)
    )


async def _random_trace(store: RedisLightningStore, rng: random.Random) -> tuple[str, list[str]]:
    """A rollout of three attempts with spans of random names, parents and (often equal) sequence ids."""
    started = await store.start_rollout("traced")
    rid = started.rollout_id
    aids = [started.attempt.attempt_id]
    for _ in range(2):
        await store.update_attempt(rid, "latest", status="failed")
        aids.append((await store.start_attempt(rid)).attempt.attempt_id)
    n = 0
    for aid in aids:
        spans = []
        for _ in range(rng.randint(15, 40)):
            n += 1
            spans.append(
                Span.from_attributes(
                    attributes={},
                    rollout_id=rid,
                    attempt_id=aid,
                    sequence_id=rng.choice([n, rng.randint(1, 5)]),
                    name=rng.choice(["llm", "tool", "reward", "agent"]),
                    span_id=f"sp-{n}",
                    trace_id=f"tr-{rng.randint(0, 3)}",
                    parent_id=rng.choice([None, f"sp-{rng.randint(0, n)}"]),
                )
            )
        await store.add_many_spans(spans)
    return rid, aids


async def assert_span_queries_match_scan(
    store: RedisLightningStore, rng: random.Random, rid: str, aids: list[str]
) -> None:
    every = await _scanned_spans(store, rid)
    for attempt in (None, "latest", aids[0]):
        scope = (
            every
            if attempt is None
            else [s for s in every if s.attempt_id == (aids[-1] if attempt == "latest" else attempt)]
        )
        for query in SPAN_QUERIES:
            candidates = [s for s in scope if _matches(s, query)]
            for limit, offset in _pages(rng, len(scope)):
                expected = sort_and_page(
                    candidates,
                    sort_by=query.get("sort_by", "sequence_id"),
                    sort_order=query.get("sort_order", "asc"),
                    limit=limit,
                    offset=offset,
                )
                got = await store.query_spans(rid, attempt, **query, limit=limit, offset=offset)
                where = (attempt, query, limit, offset)
                assert got.total == expected.total, where
                assert [s.span_id for s in got.items] == [s.span_id for s in expected.items], where


@pytest.mark.parametrize("seed", [1, 2])
async def test_filtered_span_pages_equal_a_full_scan(store: RedisLightningStore, seed: int) -> None:
    rng = random.Random(seed)
    rid, aids = await _random_trace(store, rng)
    await assert_span_queries_match_scan(store, rng, rid, aids)


async def test_a_trace_without_order_indexes_is_filtered_and_sorted_the_same(store: RedisLightningStore) -> None:
    rng = random.Random(3)
    rid, aids = await _random_trace(store, rng)
    await store._redis.delete(*(store.keys.span_order(rid, aid) for aid in aids))
    await assert_span_queries_match_scan(store, rng, rid, aids)


async def test_a_filtered_span_query_reads_the_trace_in_bounded_chunks(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No single reply carries the trace: every HMGET / HSCAN asks for at most SPAN_CHUNK spans."""
    from lightning_queue.store import redis as redis_store

    monkeypatch.setattr(redis_store, "SPAN_CHUNK", 7)
    rid, aids = await _random_trace(store, random.Random(4))
    total = len(await _scanned_spans(store, rid))
    asked: list[tuple[str, int]] = []
    client = store._redis
    hmget, hscan = client.hmget, client.hscan

    async def counting_hmget(key: str, fields: list[str]) -> Any:
        asked.append(("hmget", len(fields)))
        return await hmget(key, fields)

    async def counting_hscan(key: str, cursor: int = 0, **kwargs: Any) -> Any:
        asked.append(("hscan", kwargs["count"]))
        return await hscan(key, cursor, **kwargs)

    async def no_hgetall(key: str) -> Any:
        raise AssertionError(f"HGETALL of {key}")

    monkeypatch.setattr(client, "hmget", counting_hmget)
    monkeypatch.setattr(client, "hscan", counting_hscan)
    monkeypatch.setattr(client, "hgetall", no_hgetall)
    page = await store.query_spans(rid, name_contains="", limit=3, offset=4)
    assert page.total == total and len(page.items) == 3
    assert asked and all(kind == "hmget" and n <= 7 for kind, n in asked), asked
    assert sum(n for _, n in asked) == total
    asked.clear()
    await store._redis.delete(*(store.keys.span_order(rid, aid) for aid in aids))
    page = await store.query_spans(rid, name_contains="", sort_by="name", limit=3)
    assert page.total == total
    assert asked and all(kind == "hscan" and n == 7 for kind, n in asked), asked


@pytest.mark.parametrize("drop_order_index", [False, True])
async def test_a_span_whose_stored_name_validation_converts_is_filtered_on_the_validated_name(
    store: RedisLightningStore, make_span: Any, drop_order_index: bool
) -> None:
    """The filter's shortcut reads plain str fields unvalidated; a name stored as bytes is left to validation."""
    started = await store.start_rollout("t")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    await store.add_many_spans([make_span(rid, aid, n, name="llm", span_id=f"sp-{n}") for n in (1, 2)])
    stored = make_span(rid, aid, 3, name="llm", span_id="sp-3").model_dump()
    await store.add_span(make_span(rid, aid, 3, name="other", span_id="sp-3"))
    stored["name"] = b"llm"  # msgpack bin; Span validation decodes it to "llm"
    await store._redis.hset(store.keys.spans(rid), f"{aid}:sp-3", codec.pack(stored))
    if drop_order_index:
        await store._redis.delete(store.keys.span_order(rid, aid))
    page = await store.query_spans(rid, name="llm")
    assert [s.span_id for s in page.items] == ["sp-1", "sp-2", "sp-3"] and page.total == 3
    assert (await store.query_spans(rid, name="other")).total == 0


async def test_a_page_of_a_one_attempt_trace_is_one_round_trip(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common read (an algorithm reading each finished rollout's trace) is one script call; a page
    larger than SPAN_CHUNK or a trace over several attempts is read the long way, with the same result."""
    from lightning_queue.store import redis as redis_store

    store = make_store(scan_debounce_seconds=3600)  # no watchdog sweep in the counted calls
    started = await store.start_rollout("traced")
    rid, aid = started.rollout_id, started.attempt.attempt_id
    spans = [
        Span.from_attributes(attributes={"i": i}, rollout_id=rid, attempt_id=aid, sequence_id=i, name=f"s{i}")
        for i in range(1, 11)
    ]
    await store.add_many_spans(spans)
    await store.query_spans(rid)  # connections made and scripts loaded before counting
    trips = RoundTrips(monkeypatch)
    for attempt in (None, "latest", aid):
        trips.reset()
        page = await store.query_spans(rid, attempt, limit=4, offset=3)
        assert ([s.name for s in page.items], page.total) == (["s4", "s5", "s6", "s7"], 10)
        assert trips.count == 1, (attempt, trips.count)
    assert (await store.query_spans(rid, "at-other")).total == 0

    monkeypatch.setattr(redis_store, "SPAN_CHUNK", 3)
    trips.reset()
    page = await store.query_spans(rid)
    assert [s.name for s in page.items] == [f"s{i}" for i in range(1, 11)] and page.total == 10
    assert trips.count > 1  # read in chunks of 3
