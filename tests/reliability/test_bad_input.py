"""Bad input the other suites do not cover: each is a clear error naming the problem, and nothing is
stored or corrupted. Ids that cannot be key parts, wrong `RolloutConfig` types, absurd paging, size
limits, corrupt records planted in Redis, and a Redis that is not there yet.

The rest of the matrix (oversized and unserialisable values, unknown statuses, negative paging,
malformed URLs, proxy requests, junk from agents, `--agent` pointing at nothing) lives with the code
it tests; docs/reliability.md lists every case and its test.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest
import redis.exceptions
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.types import AttemptedRollout, PromptTemplate, Span
from tests.support.pools import PoolFactory, eventually
from tests.support.redis_servers import ServerFactory, free_port

StoreFactory = Callable[..., RedisLightningStore]
BAD_ARGUMENT = (ValueError, TypeError)
PROMPT = {"prompt": PromptTemplate(template="t")}


READERS: dict[str, Callable[[Any, bytes], Awaitable[Any]]] = {
    "string": lambda r, key: r.get(key),
    "hash": lambda r, key: r.hgetall(key),
    "zset": lambda r, key: r.zrange(key, 0, -1, withscores=True),
    "stream": lambda r, key: r.xrange(key),
    "set": lambda r, key: r.smembers(key),
    "list": lambda r, key: r.lrange(key, 0, -1),
}


async def snapshot(store: RedisLightningStore) -> dict[bytes, Any]:
    """Every key of the namespace with its type and full contents."""
    r = store._redis
    found: dict[bytes, Any] = {}
    async for key in r.scan_iter(match=f"lq:{{{store.namespace}}}:*", count=500):
        kind = await r.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        found[key] = (kind, await READERS[kind](r, key))
    return found


@pytest.fixture
async def quiet_store(make_store: StoreFactory) -> RedisLightningStore:
    """A store whose lazy watchdog ran once already, so a failed call cannot hide behind a sweep's writes."""
    store = make_store(scan_debounce_seconds=3600)
    await store.sweep(force=True)
    return store


@pytest.fixture
async def started(quiet_store: RedisLightningStore) -> AttemptedRollout:
    return await quiet_store.start_rollout({"task": 1}, worker_id="worker-1")


# --- ids that cannot be key parts -----------------------------------------------------------------
BAD_IDS = [
    pytest.param("ro 1", id="space"),
    pytest.param("ro/1", id="slash"),
    pytest.param("{ro}", id="braces"),
    pytest.param("ro:1", id="colon"),
    pytest.param("x" * 10240, id="10kB"),
    # `$` matches before a final newline: 'ro-1\n' must not pass as 'ro-1'.
    pytest.param("ro-1\n", id="trailing newline"),
]
IdWrite = Callable[[RedisLightningStore, str, AttemptedRollout], Awaitable[Any]]


def _span(rollout_id: str, attempt_id: str, span_id: str | None = None) -> Span:
    return Span.from_attributes(
        attributes={}, rollout_id=rollout_id, attempt_id=attempt_id, sequence_id=1, name="s", span_id=span_id
    )


ID_WRITES: dict[str, IdWrite] = {
    "update_rollout": lambda s, bad, ok: s.update_rollout(bad, status="failed"),
    "update_attempt rollout_id": lambda s, bad, ok: s.update_attempt(bad, "latest", status="failed"),
    "update_attempt attempt_id": lambda s, bad, ok: s.update_attempt(ok.rollout_id, bad, status="failed"),
    "start_attempt": lambda s, bad, ok: s.start_attempt(bad, worker_id="worker-1"),
    "start_rollout worker_id": lambda s, bad, ok: s.start_rollout("t", worker_id=bad),
    "enqueue_rollout resources_id": lambda s, bad, ok: s.enqueue_rollout("t", resources_id=bad),
    "update_resources": lambda s, bad, ok: s.update_resources(bad, PROMPT),
    "update_worker": lambda s, bad, ok: s.update_worker(bad, heartbeat_stats={}),
    "dequeue_rollout worker_id": lambda s, bad, ok: s.dequeue_rollout(worker_id=bad),
    "add_span rollout_id": lambda s, bad, ok: s.add_span(_span(bad, ok.attempt.attempt_id)),
    "add_span attempt_id": lambda s, bad, ok: s.add_span(_span(ok.rollout_id, bad)),
    "get_next_span_sequence_id": lambda s, bad, ok: s.get_next_span_sequence_id(bad, ok.attempt.attempt_id),
}


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("write", ID_WRITES)
async def test_writes_with_an_id_that_cannot_be_a_key_part_fail_naming_it_and_store_nothing(
    quiet_store: RedisLightningStore, started: AttemptedRollout, write: str, bad: str
) -> None:
    before = await snapshot(quiet_store)

    with pytest.raises(BAD_ARGUMENT) as raised:
        await ID_WRITES[write](quiet_store, bad, started)

    assert repr(bad)[:50] in str(raised.value), str(raised.value)
    assert await snapshot(quiet_store) == before


@pytest.mark.parametrize("write", ID_WRITES)
async def test_an_error_about_a_10kB_id_quotes_only_its_start(
    quiet_store: RedisLightningStore, started: AttemptedRollout, write: str
) -> None:
    with pytest.raises(BAD_ARGUMENT) as raised:
        await ID_WRITES[write](quiet_store, "x" * 10240, started)

    assert len(str(raised.value)) < 1000


ID_READS: dict[str, Callable[[RedisLightningStore, str], Awaitable[Any]]] = {
    "get_rollout_by_id": lambda s, bad: s.get_rollout_by_id(bad),
    "get_latest_attempt": lambda s, bad: s.get_latest_attempt(bad),
    "query_attempts": lambda s, bad: s.query_attempts(bad),
    "query_spans": lambda s, bad: s.query_spans(bad),
    "query_rollouts rollout_id_in": lambda s, bad: s.query_rollouts(rollout_id_in=[bad]),
    "wait_for_rollouts": lambda s, bad: s.wait_for_rollouts(rollout_ids=[bad], timeout=0),
    "get_worker_by_id": lambda s, bad: s.get_worker_by_id(bad),
    "get_resources_by_id": lambda s, bad: s.get_resources_by_id(bad),
}


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("read", ID_READS)
async def test_reads_with_an_id_that_cannot_be_a_key_part_find_nothing(
    quiet_store: RedisLightningStore, started: AttemptedRollout, read: str, bad: str
) -> None:
    before = await snapshot(quiet_store)

    found = await ID_READS[read](quiet_store, bad)

    assert found is None or list(found) == []
    assert await snapshot(quiet_store) == before


async def test_a_10kB_span_id_is_refused_naming_the_limit(
    quiet_store: RedisLightningStore, started: AttemptedRollout
) -> None:
    before = await snapshot(quiet_store)

    with pytest.raises(ValueError, match="span_id must be a non-empty string of at most 256 characters"):
        await quiet_store.add_span(_span(started.rollout_id, started.attempt.attempt_id, span_id="s" * 10240))

    assert await snapshot(quiet_store) == before


# --- RolloutConfig --------------------------------------------------------------------------------
BAD_CONFIGS = [
    pytest.param({"max_attempts": "three"}, "max_attempts", id="max_attempts not a number"),
    pytest.param({"max_attempts": 0}, "max_attempts", id="max_attempts 0"),
    pytest.param({"max_attempts": 10**30}, "1000000000000000000000000000000", id="max_attempts 10**30"),
    pytest.param({"retry_condition": ["bogus"]}, "retry_condition", id="unknown retry status"),
    pytest.param({"retry_condition": "failed"}, "retry_condition", id="retry_condition a string"),
    pytest.param({"timeout_seconds": -1}, "timeout_seconds", id="negative timeout"),
    pytest.param({"unresponsive_seconds": "soon"}, "unresponsive_seconds", id="unresponsive_seconds text"),
    pytest.param({"max_attempt": 3}, "max_attempt", id="misspelt field"),
    pytest.param(42, "config must be a RolloutConfig or a dict", id="not a config"),
]


@pytest.mark.parametrize(("config", "named"), BAD_CONFIGS)
async def test_wrong_rollout_config_is_refused_naming_the_field_and_stores_nothing(
    quiet_store: RedisLightningStore, started: AttemptedRollout, config: Any, named: str
) -> None:
    before = await snapshot(quiet_store)

    with pytest.raises(BAD_ARGUMENT, match=named):
        await quiet_store.enqueue_rollout("task", config=config)
    with pytest.raises(BAD_ARGUMENT, match=named):
        await quiet_store.update_rollout(started.rollout_id, config=config, status="failed")

    assert await snapshot(quiet_store) == before


async def test_unknown_mode_is_refused_naming_it_and_stores_nothing(quiet_store: RedisLightningStore) -> None:
    before = await snapshot(quiet_store)

    with pytest.raises(ValueError, match="mode must be one of 'train', 'val', 'test', got 'training'"):
        await quiet_store.enqueue_rollout("task", mode="training")  # type: ignore[arg-type]

    assert await snapshot(quiet_store) == before


@pytest.mark.parametrize(
    "namespace", ["a b", "a:b", "{ns}", "n" * 65, "ns\n"], ids=["space", "colon", "braces", "65 chars", "newline"]
)
def test_a_namespace_that_cannot_be_a_key_part_is_refused_naming_it(namespace: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid namespace {namespace!r}")):
        RedisLightningStore("redis://127.0.0.1:6390/0", namespace=namespace)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--redis-url", "http://127.0.0.1:6379", "scheme must be one of redis, rediss, unix"),
        ("--redis-url", "redis://alice:pw-on-argv@127.0.0.1:99999/0", "Port out of range 0-65535"),
        ("--namespace", "a b", "invalid namespace 'a b'"),
    ],
)
def test_lq_worker_with_a_bad_url_or_namespace_exits_2_before_any_process_starts(
    option: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_spawning(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr("workers.pool.subprocess.Popen", no_spawning)
    args = ["worker", "--agent", "tests.support.agents:scripted", option, value]
    if option != "--redis-url":
        args += ["--redis-url", "redis://127.0.0.1:6390/0"]

    result = CliRunner().invoke(main, args)

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and message in result.output
    assert "pw-on-argv" not in result.output


# --- absurd paging and limits ---------------------------------------------------------------------
async def test_absurdly_large_limit_and_offset_give_an_empty_page_with_the_true_total(
    quiet_store: RedisLightningStore, started: AttemptedRollout
) -> None:
    page = await quiet_store.query_rollouts(limit=10**18, offset=10**18)
    spans = await quiet_store.query_spans(started.rollout_id, limit=10**18, offset=10**18)

    assert (page.items, page.total, spans.items) == ([], 1, [])


@pytest.mark.parametrize("limit", ["10", 1.5, True, None], ids=["text", "float", "bool", "None"])
async def test_a_limit_that_is_not_an_integer_is_refused_naming_it(
    quiet_store: RedisLightningStore, limit: Any
) -> None:
    with pytest.raises(ValueError, match=f"limit must be -1 \\(all\\) or a non-negative integer, got {limit!r}"):
        await quiet_store.query_rollouts(limit=limit)


@pytest.mark.slow
async def test_dequeue_with_an_absurd_limit_returns_at_once(redis_url: str) -> None:
    # In a child process: the current code spins in pure Python, which no asyncio timeout can interrupt.
    child = textwrap.dedent(
        f"""
        import asyncio
        from lightning_queue import RedisLightningStore
        async def main():
            store = RedisLightningStore({redis_url!r}, namespace="rel-absurd-limit")
            try:
                print(list(await store.dequeue_many_rollouts(limit=10**8, worker_id="w1")))
            except ValueError as exc:
                print("ValueError", exc)
        asyncio.run(main())
        """
    )
    try:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", child], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        pytest.fail("dequeue_many_rollouts(limit=10**8) on an empty queue did not return within 5 s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" or "limit" in done.stdout


async def test_a_negative_size_limit_refuses_every_write_naming_the_limit(make_store: StoreFactory) -> None:
    # Not checked when the store is built; the first write says what is wrong.
    store = make_store(max_input_bytes=-1, scan_debounce_seconds=3600)

    with pytest.raises(ValueError, match="over the limit of -1 bytes"):
        await store.enqueue_rollout("x")

    assert (await store.query_rollouts()).total == 0


# --- corrupt records planted in Redis -------------------------------------------------------------
class Planted:
    """Two records of one kind: `target` gets a corrupt field, `sibling` must stay readable."""

    def __init__(self, key: str, field: str, read: Callable[[], Awaitable[Any]], sibling: Callable[[], Awaitable[Any]]):
        self.key, self.field, self.read, self.sibling = key, field, read, sibling


async def plant_site(store: RedisLightningStore, where: str) -> Planted:
    keys = store.keys
    if where.startswith("rollout "):
        target, other = [await store.start_rollout({"n": n}, metadata={"m": n}) for n in range(2)]
        return Planted(
            keys.rollout(target.rollout_id),
            where.split()[1],
            lambda: store.get_rollout_by_id(target.rollout_id),
            lambda: store.get_rollout_by_id(other.rollout_id),
        )
    if where == "attempt metadata":
        target, other = [await store.start_rollout({"n": n}) for n in range(2)]
        for rollout in (target, other):
            await store.update_attempt(rollout.rollout_id, "latest", metadata={"note": 1})
        return Planted(
            keys.attempt(target.rollout_id, target.attempt.attempt_id),
            "metadata",
            lambda: store.get_latest_attempt(target.rollout_id),
            lambda: store.query_attempts(other.rollout_id),
        )
    if where == "span":
        target, other = [await store.start_rollout({"n": n}) for n in range(2)]
        for rollout in (target, other):
            await store.add_span(_span(rollout.rollout_id, rollout.attempt.attempt_id, span_id="sp1"))
        return Planted(
            keys.spans(target.rollout_id),
            f"{target.attempt.attempt_id}:sp1",
            lambda: store.query_spans(target.rollout_id),
            lambda: store.query_spans(other.rollout_id),
        )
    if where == "resources":
        await store.update_resources("rs-target", PROMPT)
        await store.update_resources("rs-other", PROMPT)
        return Planted(
            keys.resources("rs-target"),
            "resources",
            lambda: store.get_resources_by_id("rs-target"),
            lambda: store.get_resources_by_id("rs-other"),
        )
    assert where == "worker heartbeat_stats"
    await store.update_worker("w-target", heartbeat_stats={"n": 1})
    await store.update_worker("w-other", heartbeat_stats={"n": 2})
    return Planted(
        keys.worker("w-target"),
        "heartbeat_stats",
        lambda: store.get_worker_by_id("w-target"),
        lambda: store.get_worker_by_id("w-other"),
    )


# Direct reads; a corrupt span has none (spans are only listed): see the listing test below.
SITES = [
    "rollout input",
    "rollout config",
    "rollout metadata",
    "attempt metadata",
    "resources",
    "worker heartbeat_stats",
]
CORRUPT = [pytest.param(b"\xc1", id="invalid byte"), pytest.param(b"\x92\x01", id="truncated")]


@pytest.mark.parametrize("blob", CORRUPT)
@pytest.mark.parametrize("where", SITES)
async def test_a_corrupt_msgpack_record_fails_its_reads_naming_the_key_and_others_stay_readable(
    quiet_store: RedisLightningStore, where: str, blob: bytes
) -> None:
    site = await plant_site(quiet_store, where)
    sibling_before = await site.sibling()
    await quiet_store._redis.hset(site.key, site.field, blob)

    with pytest.raises(ValueError, match="corrupt msgpack record") as raised:
        await site.read()

    assert site.key in str(raised.value)
    assert await site.sibling() == sibling_before


@pytest.mark.parametrize(
    "where", ["rollout config", "rollout metadata", "attempt metadata", "resources", "worker heartbeat_stats"]
)
async def test_a_record_of_the_wrong_shape_fails_its_reads_naming_the_key(
    quiet_store: RedisLightningStore, where: str
) -> None:
    site = await plant_site(quiet_store, where)
    sibling_before = await site.sibling()
    await quiet_store._redis.hset(site.key, site.field, msgpack.packb(5))

    with pytest.raises(ValueError) as raised:
        await site.read()

    assert await site.sibling() == sibling_before
    assert site.key in str(raised.value), str(raised.value)


# How a record can be corrupt: garbage bytes, a field gone, a value of the wrong type, a key of the wrong type.
Corruption = Callable[[Any, str, str], Awaitable[Any]]
CORRUPTIONS: dict[str, Corruption] = {
    "garbage bytes": lambda r, key, field: r.hset(key, field, b"\xc1\xff"),
    "missing field": lambda r, key, field: r.hdel(key, field),
    "wrong value type": lambda r, key, field: r.hset(
        key, field, msgpack.packb([1, 2]) if field != "start_time" else b"x"
    ),
    "wrong key type": lambda r, key, field: _replace_with_string(r, key),
}


async def _replace_with_string(r: Any, key: str) -> None:
    await r.delete(key)
    await r.set(key, b"not a hash")


class Listed:
    """Two records listed together: `key` (field `field`) gets corrupted, the other must still be listed."""

    def __init__(self, key: str, field: str, listing: Callable[[], Awaitable[list[str]]], good: str, bad: str):
        self.key, self.field, self.listing, self.good, self.bad = key, field, listing, good, bad


async def _finished_pair(store: RedisLightningStore) -> tuple[AttemptedRollout, AttemptedRollout]:
    pair = [await store.start_rollout({"n": n}, metadata={"m": n}) for n in range(2)]
    for rollout in pair:
        await store.update_attempt(rollout.rollout_id, "latest", status="succeeded", metadata={"note": 1})
    return pair[0], pair[1]


async def list_site(store: RedisLightningStore, where: str) -> Listed:
    keys = store.keys

    async def rollout_ids() -> list[str]:
        return [r.rollout_id for r in (await store.query_rollouts()).items]

    if where.startswith("rollout ") or where.startswith("wait "):
        bad, good = await _finished_pair(store)
        ids = [bad.rollout_id, good.rollout_id]

        async def waited() -> list[str]:
            return [r.rollout_id for r in await store.wait_for_rollouts(rollout_ids=ids, timeout=5)]

        listing = waited if where.startswith("wait ") else rollout_ids
        return Listed(keys.rollout(bad.rollout_id), where.split()[1], listing, good.rollout_id, bad.rollout_id)
    if where == "latest attempt":
        bad, good = await _finished_pair(store)
        key = keys.attempt(bad.rollout_id, bad.attempt.attempt_id)
        return Listed(key, "start_time", rollout_ids, good.rollout_id, bad.rollout_id)
    if where == "attempt":
        rollout = await store.start_rollout({"n": 1})
        await store.update_attempt(rollout.rollout_id, "latest", status="failed")
        second = await store.start_attempt(rollout.rollout_id)

        async def attempt_ids() -> list[str]:
            return [a.attempt_id for a in (await store.query_attempts(rollout.rollout_id)).items]

        key = keys.attempt(rollout.rollout_id, rollout.attempt.attempt_id)
        return Listed(key, "start_time", attempt_ids, second.attempt.attempt_id, rollout.attempt.attempt_id)
    if where == "span":
        rollout = await store.start_rollout({"n": 1})
        for span_id in ("sp-bad", "sp-good"):
            await store.add_span(_span(rollout.rollout_id, rollout.attempt.attempt_id, span_id=span_id))

        async def span_ids() -> list[str]:
            return [s.span_id for s in (await store.query_spans(rollout.rollout_id)).items]

        return Listed(
            keys.spans(rollout.rollout_id), f"{rollout.attempt.attempt_id}:sp-bad", span_ids, "sp-good", "sp-bad"
        )
    if where.startswith("resources "):
        await store.update_resources("rs-bad", PROMPT)
        await store.update_resources("rs-good", PROMPT)

        async def resources_ids() -> list[str]:
            return [r.resources_id for r in (await store.query_resources()).items]

        return Listed(keys.resources("rs-bad"), where.split()[1], resources_ids, "rs-good", "rs-bad")
    assert where.startswith("worker "), where
    await store.update_worker("w-bad", heartbeat_stats={"n": 1})
    await store.update_worker("w-good", heartbeat_stats={"n": 2})

    async def worker_ids() -> list[str]:
        return [w.worker_id for w in (await store.query_workers()).items]

    return Listed(keys.worker("w-bad"), where.split()[1], worker_ids, "w-good", "w-bad")


LIST_SITES = [
    "rollout input",
    "rollout config",
    "rollout metadata",
    "rollout status",
    "rollout start_time",
    "wait status",
    "wait input",
    "latest attempt",
    "attempt",
    "span",
    "resources resources",
    "resources version",
    "worker heartbeat_stats",
    "worker last_heartbeat_time",
]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("where", LIST_SITES)
async def test_one_corrupt_record_is_logged_naming_its_key_and_left_out_of_lists_not_failing_them(
    quiet_store: RedisLightningStore, where: str, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    site = await list_site(quiet_store, where)
    if corruption == "missing field" and site.field in ("metadata", "heartbeat_stats", "last_heartbeat_time"):
        pytest.skip("the field is optional: without it the record is still valid")
    if corruption == "missing field" and where == "span":
        pytest.skip("a span is one hash field: without it the span is simply not there")
    if corruption == "wrong value type" and site.field == "input":
        pytest.skip("an input may be any msgpack value")
    if corruption == "wrong key type" and where == "span":
        pytest.skip("the span hash is the whole list of its rollout: see the wrong-type test below")
    assert site.bad in await site.listing()
    await CORRUPTIONS[corruption](quiet_store._redis, site.key, site.field)

    listed = await site.listing()

    assert site.good in listed and site.bad not in listed, listed
    assert any(site.key in r.getMessage() for r in caplog.records if r.levelname == "ERROR"), caplog.text


DIRECT_READS: dict[str, Callable[[RedisLightningStore, Listed], Awaitable[Any]]] = {
    "rollout input": lambda s, site: s.get_rollout_by_id(site.bad),
    "rollout status": lambda s, site: s.get_rollout_by_id(site.bad),
    "latest attempt": lambda s, site: s.get_latest_attempt(site.bad),
    "resources resources": lambda s, site: s.get_resources_by_id(site.bad),
    "worker heartbeat_stats": lambda s, site: s.get_worker_by_id(site.bad),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("where", DIRECT_READS)
async def test_a_direct_read_of_the_corrupt_record_raises_naming_its_key(
    quiet_store: RedisLightningStore, where: str, corruption: str
) -> None:
    site = await list_site(quiet_store, where)
    if corruption == "missing field" and site.field in ("heartbeat_stats",):
        pytest.skip("the field is optional: without it the record is still valid")
    if corruption == "wrong value type" and site.field == "input":
        pytest.skip("an input may be any msgpack value")
    await CORRUPTIONS[corruption](quiet_store._redis, site.key, site.field)

    with pytest.raises(ValueError, match="Redis key") as raised:
        await DIRECT_READS[where](quiet_store, site)

    assert site.key in str(raised.value), str(raised.value)


async def test_a_span_hash_of_the_wrong_type_fails_only_its_rollouts_spans_naming_the_key(
    quiet_store: RedisLightningStore,
) -> None:
    bad, good = [await quiet_store.start_rollout({"n": n}) for n in range(2)]
    for rollout in (bad, good):
        await quiet_store.add_span(_span(rollout.rollout_id, rollout.attempt.attempt_id, span_id="sp1"))
    await _replace_with_string(quiet_store._redis, quiet_store.keys.spans(bad.rollout_id))

    with pytest.raises(ValueError, match="Redis key") as raised:
        await quiet_store.query_spans(bad.rollout_id)

    assert quiet_store.keys.spans(bad.rollout_id) in str(raised.value)
    assert [s.span_id for s in await quiet_store.query_spans(good.rollout_id)] == ["sp1"]


@pytest.mark.parametrize("corruption", ["garbage bytes", "wrong key type"])
async def test_statistics_survive_corrupt_counters_and_log_the_key(
    quiet_store: RedisLightningStore, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    await quiet_store.start_rollout({"n": 1})
    await CORRUPTIONS[corruption](quiet_store._redis, quiet_store.keys.meta, "attempts")

    stats = await quiet_store.statistics()

    assert stats["total_rollouts"] == 1
    assert any(quiet_store.keys.meta in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


async def test_a_batch_enqueued_with_one_unreadable_input_leaves_lists_and_waits_working(
    quiet_store: RedisLightningStore,
) -> None:
    # The hostile review's repro: the batch raised, yet was stored, and every listing failed afterwards.
    kept = await quiet_store.enqueue_rollout({"n": 0})
    batch = [{"input": {"n": 1}}, {"input": {(1, 2): "tuple key"}}]

    with pytest.raises(TypeError, match="does not read back"):
        await quiet_store.enqueue_many_rollouts(batch)  # type: ignore[arg-type]

    assert [r.rollout_id for r in (await quiet_store.query_rollouts()).items] == [kept.rollout_id]
    assert await quiet_store.wait_for_rollouts(rollout_ids=[kept.rollout_id], timeout=0) == []


@pytest.mark.slow
async def test_a_corrupt_rollout_in_the_queue_does_not_take_down_the_worker_or_its_neighbours(
    observer: RedisLightningStore, start_pool: PoolFactory, redis_url: str
) -> None:
    good = [(await observer.enqueue_rollout({"mark": str(i)})).rollout_id for i in range(3)]
    bad = await observer.enqueue_rollout({"mark": "bad"})
    good += [(await observer.enqueue_rollout({"mark": str(i)})).rollout_id for i in range(3, 6)]
    await observer._redis.hset(observer.keys.rollout(bad.rollout_id), "input", b"\xc1")
    pool = start_pool(redis_url, concurrency=4, lease=1.0)

    done = await observer.wait_for_rollouts(rollout_ids=good, timeout=20)

    assert [r.status for r in done] == ["succeeded"] * 6
    assert [len((await observer.query_attempts(rid)).items) for rid in good] == [1] * 6
    assert "restarting" not in pool.log(), "the worker process died"

    async def bad_attempts_ended() -> bool:
        attempts = (await observer.query_attempts(bad.rollout_id)).items
        return bool(attempts) and all(a.status not in ("preparing", "running") for a in attempts)

    await eventually(bad_attempts_ended, 10, "the corrupt rollout's attempt to end")


# --- a Redis that is not there --------------------------------------------------------------------
async def test_unreachable_redis_at_start_is_a_connection_error_naming_the_address_not_the_password() -> None:
    port = free_port()
    url = f"redis://alice:s3cret-pw@127.0.0.1:{port}/0"
    store = RedisLightningStore(url, namespace="rel-unreachable")
    command = [sys.executable, "-m", "lightning_queue.cli", "status", "--namespace", "rel-unreachable"]
    status = asyncio.to_thread(
        subprocess.run,
        command,
        env={**os.environ, "LQ_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    started = time.monotonic()

    # The store and `lq status` in parallel: each rides out the client's reconnect backoff, then says so.
    store_result, cli = await asyncio.gather(store.enqueue_rollout("x"), status, return_exceptions=True)

    took = time.monotonic() - started
    assert isinstance(store_result, redis.exceptions.ConnectionError), store_result
    assert f"127.0.0.1:{port}" in str(store_result) and "s3cret-pw" not in str(store_result)
    assert isinstance(cli, subprocess.CompletedProcess)
    assert cli.returncode == 1 and f"127.0.0.1:{port}" in cli.stderr, cli.stderr
    assert "s3cret-pw" not in cli.stdout + cli.stderr
    assert took < 30
    await store.aclose()


@pytest.mark.slow
async def test_worker_started_before_redis_logs_why_it_waits_then_works_once_redis_is_up(
    redis_servers: ServerFactory, start_pool: PoolFactory, namespace: str
) -> None:
    server = redis_servers(start=False)
    pool = start_pool(server.url)

    # It waits for the shared Redis instead of starting processes (or a private server) that cannot claim.
    await eventually(lambda: _async("retrying in" in pool.log()), 20, "the worker to say it waits for Redis")
    assert f"no Redis answers at redis://127.0.0.1:{server.port}/0" in pool.log()
    assert f"connecting to 127.0.0.1:{server.port}" in pool.log()
    server.start()
    store = RedisLightningStore(server.url, namespace=namespace, lease_seconds=None, scan_debounce_seconds=3600)
    try:
        rollout = await store.enqueue_rollout({"mark": "after"})
        [done] = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=30)
        assert done.status == "succeeded"
    finally:
        await store.aclose()


async def _async(value: bool) -> bool:
    return value


@pytest.mark.parametrize("which", ["rollout", "attempt"])
async def test_a_corrupt_live_record_does_not_stop_the_calls_whose_watchdog_sweep_trips_on_it(
    make_store: StoreFactory, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The lazy sweep reads every live rollout; a key of the wrong type there made every call fail.
    store = make_store(scan_debounce_seconds=0)
    bad, good = [await store.start_rollout({"n": n}) for n in range(2)]
    key = (
        store.keys.rollout(bad.rollout_id)
        if which == "rollout"
        else store.keys.attempt(bad.rollout_id, bad.attempt.attempt_id)
    )
    await _replace_with_string(store._redis, key)

    listed = [r.rollout_id for r in (await store.query_rollouts()).items]
    ended = await store.update_attempt(good.rollout_id, "latest", status="succeeded")

    assert listed == [good.rollout_id] and ended.status == "succeeded"
    assert any(key in r.getMessage() for r in caplog.records if r.levelname == "ERROR"), caplog.text
    assert "watchdog sweep failed" in caplog.text
