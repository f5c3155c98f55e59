"""The Redis limit: the no-op workload as a minimal redis-py loop, with the store's round trips per rollout.

No Lua, no validation, no models: each step the store does in one round trip is one pipeline here,
on the same keys' shapes, in the same process layout (the algorithm in the orchestrator, K worker
processes). Per rollout: XREADGROUP (per batch), claim (one pipeline per batch), spans (one pipeline),
succeed (one pipeline: status, XACK, XDEL, XADD done); the algorithm enqueues one pipeline per chunk,
waits with XREAD BLOCK on `done` (+ one pipeline reading the finished rollouts) and reads spans with
ZRANGE then HMGET, as `query_spans` does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .workload import SPAN_ATTRIBUTES, SPANS_PER_ROLLOUT, algorithm_round, span_name, worker_round

GROUP = "workers"


class RawKeys:
    def __init__(self, namespace: str) -> None:
        self.prefix = f"rawbench:{{{namespace}}}:"
        self.queue = self.prefix + "queue"
        self.done = self.prefix + "done"

    def rollout(self, rid: str) -> str:
        return f"{self.prefix}ro:{rid}"

    def attempt(self, rid: str, aid: str) -> str:
        return f"{self.prefix}at:{rid}:{aid}"

    def spans(self, rid: str) -> str:
        return f"{self.prefix}sp:{rid}"


def client(url: str) -> Any:
    # Any: redis-py types replies as unions of every RESP shape; this loop knows which it gets.
    return aioredis.Redis.from_url(url, decode_responses=False)


async def ensure_group(r: Any, keys: RawKeys) -> None:
    try:
        await r.xgroup_create(keys.queue, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def purge(url: str, namespace: str) -> None:
    r = client(url)
    try:
        batch = [key async for key in r.scan_iter(match=RawKeys(namespace).prefix + "*", count=1000)]
        for i in range(0, len(batch), 1000):
            await r.unlink(*batch[i : i + 1000])
    finally:
        await r.aclose()


async def worker(url: str, namespace: str, consumer: str, stop: asyncio.Event, batch: int) -> dict[str, Any]:
    keys = RawKeys(namespace)
    r = client(url)
    entries: dict[str, bytes] = {}
    try:
        await ensure_group(r, keys)

        async def claim(count: int) -> list[tuple[str, str]]:
            reply = await r.xreadgroup(GROUP, consumer, {keys.queue: ">"}, count=count, block=100)
            got: list[tuple[str, str, bytes]] = []
            for _stream, items in reply or []:
                for entry_id, fields in items:
                    got.append((fields[b"rid"].decode(), uuid.uuid4().hex, entry_id))
            if not got:
                return []
            now = repr(time.time())
            async with r.pipeline(transaction=False) as pipe:
                for rid, aid, entry_id in got:
                    pipe.hset(
                        keys.attempt(rid, aid),
                        mapping={"status": "preparing", "start_time": now, "entry": entry_id, "consumer": consumer},
                    )
                    pipe.hset(keys.rollout(rid), mapping={"status": "preparing", "latest": aid})
                await pipe.execute()
            for _rid, aid, entry_id in got:
                entries[aid] = entry_id
            return [(rid, aid) for rid, aid, _ in got]

        async def finish(rid: str, aid: str) -> None:
            fields = {}
            for seq in range(1, SPANS_PER_ROLLOUT + 1):
                field = f"{aid}:{uuid.uuid4().hex[:16]}"
                # The fields of a stored Span, so the payload is about the store's size.
                span = {
                    "rollout_id": rid,
                    "attempt_id": aid,
                    "sequence_id": seq,
                    "trace_id": uuid.uuid4().hex,
                    "span_id": field.split(":")[1],
                    "parent_id": None,
                    "name": span_name(seq),
                    "status": {"status_code": "OK", "description": None},
                    "attributes": SPAN_ATTRIBUTES,
                    "events": [],
                    "links": [],
                    "start_time": time.time(),
                    "end_time": None,
                    "context": None,
                    "parent": None,
                    "resource": {"attributes": {}, "schema_url": ""},
                }
                fields[field] = msgpack.packb(span)
            await r.hset(keys.spans(rid), mapping=fields)
            now = repr(time.time())
            entry = entries.pop(aid)
            async with r.pipeline(transaction=False) as pipe:
                pipe.hset(keys.attempt(rid, aid), mapping={"status": "succeeded", "end_time": now})
                pipe.hset(keys.rollout(rid), mapping={"status": "succeeded", "end_time": now})
                pipe.xack(keys.queue, GROUP, entry)
                pipe.xdel(keys.queue, entry)
                pipe.xadd(keys.done, {"rid": rid, "end": now})
                await pipe.execute()

        return await worker_round(claim, finish, stop, batch=batch)
    finally:
        await r.aclose()


async def algorithm(
    url: str,
    namespace: str,
    *,
    rollouts: int,
    chunk: int,
    window: int,
    wait_slice: float,
    read_concurrency: int,
    deadline_seconds: float,
) -> dict[str, Any]:
    keys = RawKeys(namespace)
    r = client(url)
    cursor = b"0-0"
    try:
        await ensure_group(r, keys)

        async def enqueue(inputs: list[dict[str, Any]]) -> list[tuple[str, float]]:
            now = time.time()
            rids = [f"ro-{uuid.uuid4().hex[:12]}" for _ in inputs]
            async with r.pipeline(transaction=False) as pipe:
                for rid, task in zip(rids, inputs, strict=True):
                    fields = {"rollout_id": rid, "input": msgpack.packb(task), "status": "queuing", "start_time": now}
                    pipe.hset(keys.rollout(rid), mapping=fields)
                    pipe.xadd(keys.queue, {"rid": rid})
                await pipe.execute()
            return [(rid, now) for rid in rids]

        async def wait(pending: list[str]) -> list[tuple[str, float | None]]:
            nonlocal cursor
            reply = await r.xread({keys.done: cursor}, count=10000, block=max(1, int(wait_slice * 1000)))
            finished: list[tuple[str, float | None]] = []
            for _stream, items in reply or []:
                for entry_id, fields in items:
                    cursor = entry_id
                    finished.append((fields[b"rid"].decode(), float(fields[b"end"])))
            if finished:
                async with r.pipeline(transaction=False) as pipe:
                    for rid, _ in finished:
                        pipe.hgetall(keys.rollout(rid))
                    await pipe.execute()
            return finished

        async def read_spans(rid: str) -> int:
            return len(await r.hgetall(keys.spans(rid)))

        return await algorithm_round(
            enqueue=enqueue,
            wait=wait,
            read_spans=read_spans,
            rollouts=rollouts,
            chunk=chunk,
            window=window,
            read_concurrency=read_concurrency,
            deadline_seconds=deadline_seconds,
        )
    finally:
        await r.aclose()
