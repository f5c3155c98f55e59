"""RedisLightningStore: the v0.3 store contract on Redis (streams for the queue, Lua for transitions)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..resilience import Outage
from ..types import (
    ATTEMPT_STATUSES,
    ROLLOUT_MODES,
    ROLLOUT_STATUSES,
    TERMINAL_STATUSES,
    UNSET,
    WORKER_STATUSES,
    Attempt,
    AttemptedRollout,
    AttemptStatus,
    EnqueueRolloutRequest,
    FilterLogic,
    NamedResources,
    PaginatedResult,
    ResourcesUpdate,
    Rollout,
    RolloutConfig,
    RolloutMode,
    RolloutStatus,
    SortOrder,
    Span,
    Worker,
    WorkerStatus,
)
from ..types.resources import ResourceUnion
from . import codec, gate, paging, pause, reads, staleness
from .base import LightningStore
from .connection import PerLoop, make_client, redact, resolve_url
from .errors import AttemptNotFound, RolloutNotFound
from .keys import Keys, check_id, is_valid_id, new_attempt_id, new_resources_id, new_rollout_id
from .leases import Claim, Leases
from .loop_client import LoopClient
from .memory import MemoryInfo, check_policy, read_memory_info
from .otel import span_for_attempt
from .query import (
    check_choice,
    check_paging,
    check_sort,
    check_statuses,
    combine,
    sort_and_page,
    text_matches,
)
from .schema import GROUP, HELD_CONSUMER, MAX_SEQUENCE_ID, SEQUENCE_PLACEHOLDER, SEQUENCE_PLACEHOLDER_VALUE
from .settings import resolve_namespace
from .staleness import StalenessBound, StalePolicy
from .transitions import LEAVE, AttemptChanges, Leave, NewRollout, NewSpan, RolloutChanges, ScriptConfig, Transitions
from .watchdog import Watchdog

logger = logging.getLogger(__name__)

DEQUEUE_BATCH = 1000
DELETE_BATCH = 100
# Spans read per round trip by a filtered or sorted span query (spans are large: fewer than ids).
SPAN_CHUNK = 200
_resources_adapter: Any = None


def _resources_validator() -> Any:
    global _resources_adapter
    if _resources_adapter is None:
        from pydantic import TypeAdapter

        _resources_adapter = TypeAdapter(dict[str, ResourceUnion])
    return _resources_adapter


def _f(value: float) -> str:
    return repr(float(value))


R = TypeVar("R")


def _listed(build: Callable[[], R]) -> R | None:
    """A listing reports a corrupt record for itself (one error naming its key) and lists the others."""
    try:
        return build()
    except codec.CorruptRecord as exc:
        logger.error("%s; left out of the listing (a direct read of it raises this error)", exc)
        return None


class RedisLightningStore(LightningStore):
    """The store on Redis. Safe to share between coroutines, threads (one client per event loop) and processes.

    Args:
        url: Redis URL; when None it resolves as `LQ_REDIS_URL`, `REDIS_URL`, a Redis at
            127.0.0.1:6379, else an embedded server (see `connection.resolve_url`).
        namespace: isolates one run's keys from another's on the same Redis.
        client_factory: builds an asyncio Redis client (used instead of `url`, e.g. for fakeredis).
        scan_debounce_seconds: at most one lazy watchdog sweep per this many seconds (0 = before every call).
        lease_seconds: a claimed stream entry whose holder has not renewed it for this long is reclaimed
            and its attempt marked `unresponsive`. Use one value for every process of a namespace.
        default_config: the `RolloutConfig` of rollouts enqueued without one.
        max_input_bytes / max_span_bytes / max_resources_bytes: size limits of one encoded record.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        client_factory: Callable[[], aioredis.Redis] | None = None,
        scan_debounce_seconds: float = 10.0,
        lease_seconds: float | None = 30.0,
        default_config: RolloutConfig | None = None,
        max_input_bytes: int = 1 << 20,
        max_span_bytes: int = 4 << 20,
        max_resources_bytes: int = 1 << 20,
    ) -> None:
        self.keys = Keys(resolve_namespace(namespace))
        self.namespace = self.keys.namespace
        if client_factory is None:
            self.url: str | None = resolve_url(url)
            self._factory: Callable[[], aioredis.Redis] = lambda: make_client(self.url or "")
        else:
            self.url = url
            self._factory = client_factory
        if scan_debounce_seconds < 0:
            raise ValueError(f"scan_debounce_seconds must be >= 0, got {scan_debounce_seconds!r}")
        if lease_seconds is not None and lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive or None, got {lease_seconds!r}")
        self.scan_debounce_seconds = scan_debounce_seconds
        self.lease_seconds = lease_seconds
        self.default_config = default_config or RolloutConfig()
        self.max_input_bytes = max_input_bytes
        self.max_span_bytes = max_span_bytes
        self.max_resources_bytes = max_resources_bytes
        self._created = time.monotonic()
        self._clients: PerLoop[LoopClient] = PerLoop(lambda: LoopClient(self._factory()))
        self.transitions = Transitions(self.keys, self._script)
        # The worker lease API (claim / renew / release): the runtime uses it, the contract does not.
        self.leases = Leases(self)
        self.pausing = pause.ClaimsPause(self)
        self._dequeue_gate = gate.GateView()
        self.watchdog = Watchdog(self)

    def __repr__(self) -> str:
        where = redact(self.url) if self.url else "custom client"
        return f"RedisLightningStore({where!r}, namespace={self.namespace!r})"

    @property
    def capabilities(self) -> dict[str, bool]:
        return {"thread_safe": True, "async_safe": True, "zero_copy": False, "otlp_traces": False}

    # --- connections ------------------------------------------------------------------------------
    def _loop_client(self) -> LoopClient:
        return self._clients.get()

    @property
    def _redis(self) -> Any:
        # redis-py's reply types are unions of every RESP shape; replies are checked where they are used.
        return self._loop_client().redis

    async def _checked(self) -> LoopClient:
        """The loop's client, once its Redis was found not to evict keys (checked on first use)."""
        lc = self._loop_client()
        if not lc.memory_checked:
            await self.memory()
        return lc

    async def memory(self) -> MemoryInfo:
        """Memory use and eviction policy of the store's Redis (raises EvictingRedisError if it may evict)."""
        lc = self._loop_client()
        info = await read_memory_info(lc.redis)
        check_policy(info, redact(self.url) if self.url else "the custom client")
        lc.memory_checked = True
        return info

    async def _script(self, name: str) -> AsyncScript:
        """The loaded Lua transition `name` of the running loop (the facade in transitions.py calls it)."""
        return (await self._checked()).script(name)

    async def aclose(self) -> None:
        """Close the client of the running loop (clients of other loops close with their loop)."""
        lc = self._clients.pop()
        if lc is not None:
            await lc.close()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def purge(self) -> int:
        """Delete every key of this namespace; returns how many were deleted."""
        deleted = 0
        async for batch in _batched(self._redis.scan_iter(match=self.keys.prefix + "*", count=500), 500):
            deleted += int(await self._redis.unlink(*batch))
        return deleted

    async def delete_rollouts(self, rollout_ids: Sequence[str], *, spare_read_since: float | None = None) -> int:
        """Delete terminal rollouts with their attempts, spans and index entries; returns how many.

        A rollout that is not terminal (queued, running...), has a live attempt (a rollout set terminal
        by hand while its worker still runs it) or does not exist is left alone, so a caller cannot
        delete live work by mistake; with `spare_read_since`, so is one whose read mark (store/reads.py:
        a wait holds it, or handed it over) is at or after that time. Ids go DELETE_BATCH per script
        call: each call is short, and other clients run between them. Retention is built on this step;
        the store never calls it by itself (the contract keeps everything).
        """
        ids = [check_id("rollout_id", r) for r in dict.fromkeys(rollout_ids)]
        await self._checked()
        deleted = 0
        for i in range(0, len(ids), DELETE_BATCH):
            deleted += await self.transitions.delete_rollouts(ids[i : i + DELETE_BATCH], spare_read_since)
        return deleted

    async def ended_since(self, end_time: float, limit: int) -> list[tuple[str, float]]:
        """Up to `limit` (rollout id, end_time) pairs from `idx:ended` with end_time >= `end_time`, oldest first.

        Ties come in Redis's member order; callers that resume inside a tie group skip the ids they saw
        (export and retention walk the index this way in bounded pages).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        await self._checked()
        entries = await self._redis.zrangebyscore(
            self.keys.ended_rollouts, end_time, "+inf", start=0, num=limit, withscores=True
        )
        return [(m.decode(errors="replace"), float(score)) for m, score in entries]

    # --- watchdog (its schedule lives in watchdog.py) -----------------------------------------------
    async def sweep(self, *, force: bool = True) -> tuple[int, int]:
        """Run the watchdog now: time out / mark unresponsive, reclaim lapsed leases.

        Returns (verdicts, reclaimed entries); (-1, 0) if another process swept within the debounce window.
        """
        return await self.watchdog.sweep(force=force)

    async def _healthcheck(self) -> None:
        await self.watchdog.maybe_sweep()

    # --- validation helpers -----------------------------------------------------------------------
    def _pack_limited(self, value: Any, what: str, limit: int) -> bytes:
        blob = codec.pack(value)
        if len(blob) > limit:
            raise ValueError(f"{what} is {len(blob)} bytes encoded, over the limit of {limit} bytes")
        return blob

    def _new_rollout(
        self,
        input: Any,
        mode: RolloutMode | None,
        resources_id: str | None,
        config: RolloutConfig | None,
        metadata: dict[str, Any] | None,
    ) -> NewRollout:
        if mode is not None:
            check_choice("mode", mode, ROLLOUT_MODES)
        if resources_id is not None:
            check_id("resources_id", resources_id)
        config = self._check_config(config) if config is not None else self.default_config
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
        rollout_id = new_rollout_id()
        new = NewRollout(
            rollout_id=rollout_id,
            input=self._pack_limited(input, f"input of rollout {rollout_id}", self.max_input_bytes),
            mode=mode,
            resources_id=resources_id,
            config=ScriptConfig.of(config),
            metadata=None if metadata is None else self._pack_limited(metadata, "metadata", self.max_input_bytes),
        )
        self._check_rollout_reads_back(rollout_id, input=new.input, config=new.config.packed, metadata=new.metadata)
        return new

    def _check_rollout_reads_back(
        self, rollout_id: str, *, input: bytes | None, config: bytes | None, metadata: bytes | None
    ) -> None:
        fields: dict[str, Any] = {
            "rollout_id": rollout_id.encode(),
            "input": codec.pack(None) if input is None else input,
            "start_time": b"0",
            "status": b"queuing",
            "config": ScriptConfig.of(self.default_config).packed if config is None else config,
        }
        if metadata is not None:
            fields["metadata"] = metadata
        codec.reads_back(f"rollout {rollout_id}", lambda: codec.rollout_from_fields(fields, None, key=""))

    @staticmethod
    def _check_config(config: Any) -> RolloutConfig:
        if isinstance(config, RolloutConfig):
            return RolloutConfig.model_validate(config.model_dump())
        if isinstance(config, dict):
            return RolloutConfig.model_validate(config)
        raise TypeError(f"config must be a RolloutConfig or a dict, got {type(config).__name__}")

    def _rollout(self, pair: list[Any], rollout_id: str | None = None) -> Rollout | AttemptedRollout:
        """Decode a {rollout fields, attempt fields[, error, key]} reply of a script."""
        if len(pair) > 2:  # read_rollouts found a key that is not a hash
            raise codec.CorruptRecord(pair[3].decode(errors="replace"), pair[2].decode(errors="replace"))
        ro, at = codec.pairs(pair[0]), codec.pairs(pair[1])
        if rollout_id is None:
            rollout_id = (ro.get("rollout_id") or b"").decode(errors="replace")
        attempt = None
        if at:
            akey = self.keys.attempt(rollout_id, (at.get("attempt_id") or b"").decode(errors="replace"))
            attempt = codec.attempt_from_fields(at, key=akey)
        return codec.rollout_from_fields(ro, attempt, key=self.keys.rollout(rollout_id))

    def _attempted(self, pair: list[Any]) -> AttemptedRollout:
        rollout = self._rollout(pair)
        assert isinstance(rollout, AttemptedRollout)
        return rollout

    # --- rollouts ---------------------------------------------------------------------------------
    async def statistics(self) -> dict[str, Any]:
        r = (await self._checked()).redis
        keys = self.keys
        counted = [keys.all_rollouts, keys.resources_index, keys.workers_index]
        counted += [keys.status_index(status) for status in ROLLOUT_STATUSES]
        async with r.pipeline(transaction=False) as pipe:
            for key in counted:
                pipe.zcard(key)
            pipe.hmget(keys.meta, ["attempts", "spans"])
            *counts, meta = await pipe.execute(raise_on_error=False)
        # A corrupt counter is reported for itself and counts 0; it must not hide the other numbers.
        n = {key: _count(key, reply) for key, reply in zip(counted, counts, strict=True)}
        attempts, spans = (None, None) if isinstance(meta, Exception) else meta
        if isinstance(meta, Exception):
            logger.error("corrupt counter in Redis key %r: %s; counted as 0", keys.meta, meta)
        return {
            "name": type(self).__name__,
            "namespace": self.namespace,
            "total_rollouts": n[keys.all_rollouts],
            "total_attempts": _count(f"{keys.meta} field attempts", attempts or 0),
            "total_spans": _count(f"{keys.meta} field spans", spans or 0),
            "total_resources": n[keys.resources_index],
            "total_workers": n[keys.workers_index],
            "rollouts_by_status": {s: n[keys.status_index(s)] for s in ROLLOUT_STATUSES},
            "uptime": time.monotonic() - self._created,
        }

    async def start_rollout(
        self,
        input: Any,
        mode: RolloutMode | None = None,
        resources_id: str | None = None,
        config: RolloutConfig | None = None,
        metadata: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> AttemptedRollout:
        if worker_id is not None:
            check_id("worker_id", worker_id)
        new = self._new_rollout(input, mode, resources_id, config, metadata)
        await self._healthcheck()
        reply = await self.transitions.create([new], start=True, attempt_id=new_attempt_id(), worker_id=worker_id)
        return self._attempted(reply[0])

    async def enqueue_rollout(
        self,
        input: Any,
        mode: RolloutMode | None = None,
        resources_id: str | None = None,
        config: RolloutConfig | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Rollout:
        new = self._new_rollout(input, mode, resources_id, config, metadata)
        await self._healthcheck()
        reply = await self.transitions.create([new])
        return self._rollout(reply[0])

    async def enqueue_many_rollouts(self, rollouts: Sequence[EnqueueRolloutRequest]) -> Sequence[Rollout]:
        news: list[NewRollout] = []
        for request in rollouts:
            if isinstance(request, dict):
                request = EnqueueRolloutRequest.model_validate(request)
            if not isinstance(request, EnqueueRolloutRequest):
                raise TypeError(f"expected EnqueueRolloutRequest items, got {type(request).__name__}")
            news.append(
                self._new_rollout(request.input, request.mode, request.resources_id, request.config, request.metadata)
            )
        if not news:
            return []
        await self._healthcheck()
        reply = await self.transitions.create(news)
        return [self._rollout(pair) for pair in reply]

    async def dequeue_rollout(self, worker_id: str | None = None) -> AttemptedRollout | None:
        claimed = await self.dequeue_many_rollouts(limit=1, worker_id=worker_id)
        return claimed[0] if claimed else None

    async def dequeue_many_rollouts(
        self, *, limit: int = 1, worker_id: str | None = None
    ) -> Sequence[AttemptedRollout]:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        if worker_id is not None:
            check_id("worker_id", worker_id)
        if limit == 0:
            return []
        await self._healthcheck()
        claimed: list[AttemptedRollout] = []
        # Bounded batches: the script needs a fresh attempt id per slot, and `limit` may be absurd.
        while len(claimed) < limit:
            batch = min(limit - len(claimed), DEQUEUE_BATCH)
            aids = [new_attempt_id() for _ in range(batch)]
            # Entries are deleted as they are claimed here, so one shared consumer name keeps the group small.
            # A later empty batch must not mark a busy worker idle.
            reply = await self.transitions.dequeue(
                consumer="api", worker_id=worker_id, attempt_ids=aids, idle_if_empty=not claimed
            )
            gate.report(self._dequeue_gate, reply, self.namespace, f"dequeue (worker {worker_id})")
            claimed += [r for r in [await self._claimed(pair) for pair in reply.claims] if r is not None]
            if len(reply.claims) < batch:
                break
        return claimed

    async def _claimed(self, pair: list[Any]) -> AttemptedRollout | None:
        """The claimed rollout, or None (its attempt failed, saying why) if its stored record is corrupt.

        A corrupt record must not take down the worker that happened to claim it, nor its neighbours.
        """
        try:
            return self._attempted(pair)
        except ValueError as exc:
            ro, at = codec.pairs(pair[0]), codec.pairs(pair[1])
            rollout_id, attempt_id = codec.text(ro, "rollout_id") or "", codec.text(at, "attempt_id") or ""
            logger.error("rollout %s cannot be run: %s; failing its attempt %s", rollout_id, exc, attempt_id)
            await self.update_attempt(rollout_id, attempt_id, status="failed", metadata={"error": str(exc)})
            return None

    async def start_attempt(self, rollout_id: str, worker_id: str | None = None) -> AttemptedRollout:
        if worker_id is not None:
            check_id("worker_id", worker_id)
        if not is_valid_id(rollout_id):
            raise RolloutNotFound(f"Rollout {rollout_id!r:.100} not found")
        await self._healthcheck()
        reply = await self.transitions.start_attempt(rollout_id, new_attempt_id(), worker_id)
        return self._attempted(reply)

    async def _read_rollouts(
        self, rollout_ids: Sequence[str], *, listing: bool = True
    ) -> list[Rollout | AttemptedRollout]:
        """The rollouts that exist; a corrupt one is left out and logged when `listing`, else raised."""
        if not rollout_ids:
            return []
        reply = await self.transitions.read_rollouts(rollout_ids)
        found = []
        for rid, pair in zip(rollout_ids, reply, strict=True):
            if len(pair) <= 2 and not pair[0]:
                continue
            rollout = _listed(lambda: self._rollout(pair, rid)) if listing else self._rollout(pair, rid)  # noqa: B023
            if rollout is not None:
                found.append(rollout)
        return found

    async def get_rollout_by_id(self, rollout_id: str) -> Rollout | AttemptedRollout | None:
        if not is_valid_id(rollout_id):
            return None
        await self._healthcheck()
        found = await self._read_rollouts([rollout_id], listing=False)
        return found[0] if found else None

    async def query_rollouts(
        self,
        *,
        status_in: Sequence[RolloutStatus] | None = None,
        rollout_id_in: Sequence[str] | None = None,
        rollout_id_contains: str | None = None,
        filter_logic: FilterLogic = "and",
        sort_by: str | None = None,
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
        status: Sequence[RolloutStatus] | None = None,
        rollout_ids: Sequence[str] | None = None,
        mode: RolloutMode | None = None,
    ) -> PaginatedResult[Rollout | AttemptedRollout]:
        """Rollouts matching the filters, sorted and paged as the contract says.

        `mode` (this store's own keyword, not the contract's) keeps only rollouts of that mode, whatever
        `filter_logic` says; alone, unsorted or sorted by `start_time`, it is read from the per-mode index
        (O(log N + page)); with any other filter or sort it narrows the scan described below.

        Cost: O(log N + page) from the sorted-set indexes for no filter or a status filter (one status
        or several, "and" logic), sorted by nothing (creation order), `start_time`, `end_time`
        (unfiltered, or filtered to terminal statuses), or `mode` (unfiltered); `total` is exact (sum
        of ZCARDs). Equal sort values are ordered as the contract says, which costs the size of the tie
        groups at the page's two ends. `rollout_id_contains` walks the candidate ids (not the records)
        in chunks of 1000, O(N) ids, then reads only the page when unsorted or sorted by ascending
        `start_time` (any other sort with it scans as below). Any other sort field, `filter_logic="or"`
        with several filters, or a namespace written before the end_time / mode indexes existed reads
        every candidate rollout in chunks of 1000: O(N).
        `rollout_id_in` costs O(len(rollout_id_in)).
        """
        status_in = status_in if status_in is not None else status
        rollout_id_in = rollout_id_in if rollout_id_in is not None else rollout_ids
        check_statuses("status_in", status_in, ROLLOUT_STATUSES)
        check_choice("filter_logic", filter_logic, ("and", "or"))
        check_sort(sort_by, sort_order, AttemptedRollout)
        check_paging(limit, offset)
        if mode is not None:
            check_choice("mode", mode, ROLLOUT_MODES)
        await self._healthcheck()
        statuses: list[str] | None = None if status_in is None else list(dict.fromkeys(status_in))
        if mode is not None:
            if statuses is None and rollout_id_in is None and rollout_id_contains is None:
                by_mode = await self._mode_rollouts(mode, sort_by, sort_order, limit, offset)
                if by_mode is not None:
                    return by_mode
        elif rollout_id_in is None and (filter_logic == "and" or statuses is None):
            indexed = await self._indexed_rollouts(statuses, rollout_id_contains, sort_by, sort_order, limit, offset)
            if indexed is not None:
                return indexed
        if filter_logic == "and" and rollout_id_in is not None:
            candidates = list(dict.fromkeys(r for r in rollout_id_in if is_valid_id(r)))
        elif filter_logic == "and" and statuses is not None:
            candidates = await self._index_ids([self.keys.status_index(s) for s in statuses])
        else:
            candidates = await self._index_ids([self.keys.all_rollouts])
        wanted_ids = None if rollout_id_in is None else set(rollout_id_in)
        wanted_status = None if statuses is None else set(statuses)

        def matches(r: Rollout) -> bool:
            verdicts = []
            if wanted_status is not None:
                verdicts.append(r.status in wanted_status)
            if wanted_ids is not None:
                verdicts.append(r.rollout_id in wanted_ids)
            verdicts += text_matches(r.rollout_id, None, rollout_id_contains)
            return combine(verdicts, filter_logic)

        found = [
            r for r in await self._read_rollouts_chunked(candidates) if matches(r) and (mode is None or r.mode == mode)
        ]
        return sort_and_page(found, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset)

    async def _index_ids(self, keys: Sequence[str]) -> list[str]:
        return [i for i in dict.fromkeys(await paging.all_ids(self._redis, keys)) if is_valid_id(i)]

    async def _read_rollouts_chunked(self, ids: Sequence[str]) -> list[Rollout | AttemptedRollout]:
        found: list[Rollout | AttemptedRollout] = []
        for i in range(0, len(ids), paging.CHUNK):
            found += await self._read_rollouts(ids[i : i + paging.CHUNK])
        return found

    async def _mode_rollouts(
        self, mode: str, sort_by: str | None, sort_order: str, limit: int, offset: int
    ) -> PaginatedResult[Rollout | AttemptedRollout] | None:
        """The page of one mode's rollouts from its index, or None when it cannot answer (the caller scans)."""
        if sort_by not in (None, "start_time"):
            return None
        keys = self.keys
        modes = [keys.mode_index(m) for m in (None, *sorted(ROLLOUT_MODES))]
        sizes = await paging.counts(self._redis, [keys.all_rollouts, *modes])
        if sizes[0] != sum(sizes[1:]):
            return None  # rollouts stored before the mode index existed are in none of them
        desc = sort_order == "desc"
        segment = paging.Segment((keys.mode_index(mode),), reverse=desc, exact=sort_by is None or not desc)
        total, windows = await paging.page(self._redis, [segment], limit=limit, offset=offset)
        items: list[Rollout | AttemptedRollout] = []
        for window in windows:
            found = await self._read_rollouts([i for i in window.ids if is_valid_id(i)])
            if window.exact:
                items += found
                continue
            found.sort(key=lambda r: (r.start_time, r.rollout_id))
            exact = sort_and_page(found, sort_by=sort_by, sort_order=sort_order, limit=window.take, offset=window.skip)
            items += exact.items
        return PaginatedResult(items=items, limit=limit, offset=offset, total=total)

    async def _indexed_rollouts(
        self,
        statuses: list[str] | None,
        contains: str | None,
        sort_by: str | None,
        sort_order: str,
        limit: int,
        offset: int,
    ) -> PaginatedResult[Rollout | AttemptedRollout] | None:
        """The page from the indexes, or None when they cannot answer (the caller scans instead)."""
        keys = self.keys
        base = (keys.all_rollouts,) if statuses is None else tuple(keys.status_index(s) for s in statuses)
        desc = sort_order == "desc"
        if contains is not None:
            if sort_by not in (None, "start_time") or (sort_by == "start_time" and desc):
                return None
            # Ids only are walked (in chunks); just the page's rollouts are read.
            ids = [i for i in await self._index_ids(base) if contains in i]
            if desc:
                ids.reverse()
            chosen = ids[offset:] if limit == -1 else ids[offset : offset + limit]
            page = await self._read_rollouts(chosen)
            return PaginatedResult(items=page, limit=limit, offset=offset, total=len(ids))
        if sort_by is None:
            segments = [paging.Segment(base, reverse=desc)]
        elif sort_by == "start_time":
            # A stable descending sort keeps equal start times in ascending id order: not ZREVRANGE's.
            segments = [paging.Segment(base, reverse=desc, exact=not desc)]
        elif sort_by == "end_time":
            if statuses is None:
                wanted, indexed = [keys.all_rollouts], [keys.open_rollouts, keys.ended_rollouts]
                # No end_time (None) sorts first ascending, last descending, in start-time order.
                open_ = paging.Segment((keys.open_rollouts,))
                ended = paging.Segment((keys.ended_rollouts,), reverse=desc, exact=False)
                segments = [ended, open_] if desc else [open_, ended]
            elif all(s in TERMINAL_STATUSES for s in statuses):
                wanted, indexed = list(base), [keys.end_index(s) for s in statuses]
                segments = [paging.Segment(tuple(indexed), reverse=desc, exact=False)]
            else:
                return None
            # Rollouts stored before these indexes existed are in none of them: scan those namespaces.
            sizes = await paging.counts(self._redis, wanted + indexed)
            if sum(sizes[: len(wanted)]) != sum(sizes[len(wanted) :]):
                return None
        elif sort_by == "mode" and statuses is None:
            # No mode first, then modes by name; each group in creation order (a stable sort keeps it).
            groups = [paging.Segment((keys.mode_index(m),)) for m in (None, *sorted(ROLLOUT_MODES))]
            segments = groups[::-1] if desc else groups
            sizes = await paging.counts(self._redis, [keys.all_rollouts, *(g.keys[0] for g in groups)])
            if sizes[0] != sum(sizes[1:]):
                return None
        else:
            return None
        total, windows = await paging.page(self._redis, segments, limit=limit, offset=offset)
        items: list[Rollout | AttemptedRollout] = []
        for window in windows:
            # A member planted by hand that is not an id names no record (and must not name another key).
            found = await self._read_rollouts([i for i in window.ids if is_valid_id(i)])
            if window.exact:
                items += found
                continue
            found.sort(key=lambda r: (r.start_time, r.rollout_id))
            exact = sort_and_page(found, sort_by=sort_by, sort_order=sort_order, limit=window.take, offset=window.skip)
            items += exact.items
        return PaginatedResult(items=items, limit=limit, offset=offset, total=total)

    async def update_rollout(
        self,
        rollout_id: str,
        input: Any = UNSET,
        mode: RolloutMode | None = UNSET,
        resources_id: str | None = UNSET,
        status: RolloutStatus = UNSET,
        config: RolloutConfig = UNSET,
        metadata: dict[str, Any] | None = UNSET,
    ) -> Rollout:
        new_input: bytes | Leave = LEAVE
        if input is not UNSET:
            new_input = self._pack_limited(input, f"input of rollout {rollout_id}", self.max_input_bytes)
        if mode is not UNSET and mode is not None:
            check_choice("mode", mode, ROLLOUT_MODES)
        if resources_id is not UNSET and resources_id is not None:
            check_id("resources_id", resources_id)
        new_config: ScriptConfig | Leave = LEAVE
        if config is not UNSET:
            new_config = ScriptConfig.of(self._check_config(config if config is not None else RolloutConfig()))
        new_metadata: bytes | Leave | None = LEAVE
        if metadata is not UNSET:
            if metadata is not None and not isinstance(metadata, dict):
                raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
            new_metadata = None if metadata is None else codec.pack(metadata)
        changes = RolloutChanges(
            input=new_input,
            mode=LEAVE if mode is UNSET else mode,
            resources_id=LEAVE if resources_id is UNSET else resources_id,
            config=new_config,
            metadata=new_metadata,
        )
        self._check_rollout_reads_back(
            rollout_id,
            input=None if isinstance(new_input, Leave) else new_input,
            config=None if isinstance(new_config, Leave) else new_config.packed,
            metadata=new_metadata if isinstance(new_metadata, bytes) else None,
        )
        if status is not UNSET:
            check_choice("status", status, ROLLOUT_STATUSES)
        if not is_valid_id(rollout_id):
            raise RolloutNotFound(f"Item rollout {rollout_id!r:.100} does not exist in namespace {self.namespace!r}")
        await self._healthcheck()
        try:
            reply = await self.transitions.update_rollout(rollout_id, None if status is UNSET else status, changes)
        except RolloutNotFound:
            missing = f"Item rollout {rollout_id!r} does not exist in namespace {self.namespace!r}"
            raise RolloutNotFound(missing) from None
        return self._rollout(reply)

    async def wait_for_rollouts(self, *, rollout_ids: list[str], timeout: float | None = None) -> list[Rollout]:
        if timeout is not None and timeout < 0:
            timeout = 0.0
        deadline = None if timeout is None else time.monotonic() + timeout
        ids = list(dict.fromkeys(r for r in rollout_ids if is_valid_id(r)))
        if not ids:
            return []
        feed = self._loop_client().done_feed(self.keys.done)
        held = reads.WaitMark(self._redis, self.keys.reads, ids)
        woken = asyncio.Event()
        subscribed = False
        statuses: list[str | None] | None = None
        reported: set[str] = set()
        outage = Outage(f"wait_for_rollouts in namespace {self.namespace!r}", logger=logger)
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                try:
                    if not subscribed and timeout != 0:
                        await feed.subscribe(ids, woken)
                        subscribed = True
                    await self._healthcheck()
                    await held.hold()  # retention spares what a wait holds; marked before the read: no race
                    # Read after subscribing: a completion is either in this read or wakes us later.
                    statuses = await self._statuses(ids, reported)
                    outage.over()
                except REDIS_DOWN as exc:
                    # Wait out an outage until the deadline; a caller that never got one answer hears why.
                    if remaining is not None and remaining <= 0:
                        if statuses is None:
                            raise
                        break
                    await asyncio.sleep(outage.failed(exc, remaining))
                    continue
                if all(s is None or s in TERMINAL_STATUSES for s in statuses):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                # Short slices keep the watchdog running (and re-read statuses) during a long wait.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), 1.0 if remaining is None else min(1.0, remaining))
                woken.clear()
        finally:
            if subscribed:
                feed.unsubscribe(ids, woken)
        return await self._terminal(ids, statuses)

    async def _statuses(self, ids: list[str], reported: set[str]) -> list[str | None]:
        """Each rollout's status; None for one that does not exist or whose record is corrupt (logged
        once per wait in `reported`): a waiter must neither fail nor hang on it."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hmget(self.keys.rollout(rid), ["status", "rollout_id"])
            replies = await pipe.execute(raise_on_error=False)
        statuses: list[str | None] = []
        for rid, reply in zip(ids, replies, strict=True):
            status = None if isinstance(reply, Exception) or reply[0] is None else reply[0].decode(errors="replace")
            if status in ROLLOUT_STATUSES or (status is None and not isinstance(reply, Exception) and reply[1] is None):
                statuses.append(status)
                continue
            if rid not in reported:
                reported.add(rid)
                why = reply if isinstance(reply, Exception) else f"status {status!r} is not a rollout status"
                logger.error(
                    "malformed record in Redis key %r: %s; wait_for_rollouts does not wait for it",
                    self.keys.rollout(rid),
                    why,
                )
            statuses.append(None)
        return statuses

    async def _terminal(self, ids: list[str], statuses: list[str | None]) -> list[Rollout]:
        finished = [rid for rid, s in zip(ids, statuses, strict=True) if s in TERMINAL_STATUSES]
        found = await self._read_rollouts(finished)
        return [r for r in found if r.status in TERMINAL_STATUSES]

    # --- attempts ---------------------------------------------------------------------------------
    async def query_attempts(
        self,
        rollout_id: str,
        *,
        sort_by: str | None = "sequence_id",
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[Attempt]:
        """Attempts of one rollout; by sequence id (the default) a page is O(log n + page) from its
        attempts index, any other sort reads the rollout's attempts (few: max_attempts bounds them)."""
        check_sort(sort_by, sort_order, Attempt)
        check_paging(limit, offset)
        if not is_valid_id(rollout_id):
            return PaginatedResult(items=[], limit=limit, offset=offset, total=0)
        await self._healthcheck()
        if sort_by in (None, "sequence_id"):
            # The attempts index is scored by sequence id (unique): a page is a ZRANGE of it.
            order = paging.Segment((self.keys.attempts(rollout_id),), reverse=sort_order == "desc")
            total, windows = await paging.page(self._redis, [order], limit=limit, offset=offset)
            page = await self._attempts_of(rollout_id, [i for w in windows for i in w.ids])
            return PaginatedResult(items=page, limit=limit, offset=offset, total=total)
        # Other sorts read every attempt of the rollout (a rollout has few: max_attempts bounds them).
        attempts = await self._attempts_of(rollout_id, await self._index_ids([self.keys.attempts(rollout_id)]))
        return sort_and_page(attempts, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset)

    async def _attempts_of(self, rollout_id: str, attempt_ids: Sequence[str]) -> list[Attempt]:
        aids = [a for a in attempt_ids if is_valid_id(a)]
        if not aids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for aid in aids:
                pipe.hgetall(self.keys.attempt(rollout_id, aid))
            replies = await pipe.execute(raise_on_error=False)
        found = []
        for aid, reply in zip(aids, replies, strict=True):
            key = self.keys.attempt(rollout_id, aid)
            attempt = reply and _listed(
                lambda: codec.attempt_from_fields(codec.hash_fields(reply, key=key), key=key)  # noqa: B023
            )
            if attempt:
                found.append(attempt)
        return found

    async def get_latest_attempt(self, rollout_id: str) -> Attempt | None:
        if not is_valid_id(rollout_id):
            return None
        await self._healthcheck()
        found = await self._read_rollouts([rollout_id], listing=False)
        return found[0].attempt if found and isinstance(found[0], AttemptedRollout) else None

    async def update_attempt(
        self,
        rollout_id: str,
        attempt_id: str,
        status: AttemptStatus = UNSET,
        worker_id: str = UNSET,
        last_heartbeat_time: float = UNSET,
        metadata: dict[str, Any] = UNSET,
    ) -> Attempt:
        if status is not UNSET:
            check_choice("attempt status", status, ATTEMPT_STATUSES)
        if worker_id is not UNSET and worker_id not in ("", None):
            check_id("worker_id", worker_id)
        if last_heartbeat_time is not UNSET and not isinstance(last_heartbeat_time, int | float):
            raise TypeError(f"last_heartbeat_time must be a number, got {last_heartbeat_time!r}")
        if metadata is not UNSET and metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        if not is_valid_id(rollout_id):
            raise RolloutNotFound(f"Rollout {rollout_id!r:.100} not found")
        if attempt_id != "latest" and not is_valid_id(attempt_id):
            raise AttemptNotFound(f"Attempt {attempt_id!r:.100} not found in rollout {rollout_id}")
        changes = AttemptChanges(
            status=None if status is UNSET else status,
            worker_id=LEAVE if worker_id is UNSET else worker_id,
            last_heartbeat_time=None if last_heartbeat_time is UNSET else last_heartbeat_time,
            metadata=LEAVE if metadata is UNSET else codec.attempt_metadata(attempt_id, metadata),
        )
        await self._healthcheck()
        reply = await self.transitions.update_attempt(rollout_id, attempt_id, changes)
        fields = codec.pairs(reply)
        return codec.attempt_from_fields(
            fields, key=self.keys.attempt(rollout_id, codec.text(fields, "attempt_id") or "")
        )

    # --- worker-side claiming: the lease API lives in leases.py; these delegate to `self.leases` ---------
    async def claim(
        self, *, consumer: str, worker_id: str | None = None, count: int = 1, block_ms: int = 1000
    ) -> list[Claim]:
        return await self.leases.claim(consumer=consumer, worker_id=worker_id, count=count, block_ms=block_ms)

    async def renew_leases(self, consumer: str, entry_ids: Sequence[str]) -> set[str]:
        return await self.leases.renew_leases(consumer, entry_ids)

    async def release(self, rollout_id: str, attempt_id: str, metadata: dict[str, Any] | None = None) -> bool:
        return await self.leases.release(rollout_id, attempt_id, metadata)

    # --- policy versions and the claims pause (issue 17); the pause lives in pause.py -------------
    async def policy_version(self) -> int:
        await self._checked()
        return int(await self._redis.get(self.keys.policy_version) or 0)

    async def pause_claims(self, ttl: float = pause.DEFAULT_PAUSE_TTL, *, holder: str | None = None) -> str:
        return await self.pausing.pause(ttl, holder=holder)

    async def renew_pause(self, holder: str, ttl: float = pause.DEFAULT_PAUSE_TTL) -> bool:
        return await self.pausing.renew(holder, ttl)

    async def resume_claims(self, holder: str | None = None) -> bool:
        return await self.pausing.resume(holder)

    async def claims_paused(self) -> bool:
        return (await self.pausing.status()).paused

    async def pause_status(self) -> pause.PauseStatus:
        return await self.pausing.status()

    async def set_staleness(
        self,
        max_staleness: int | None,
        batch_size: int | None = None,
        *,
        modes: Iterable[str | None] = ("train",),
        stale_policy: StalePolicy = "repin",
    ) -> StalenessBound | None:
        """Bound staleness at claim time (the rule is in staleness.py); `max_staleness=None` removes the bound."""
        return await staleness.set_bound(self, max_staleness, batch_size, modes=modes, stale_policy=stale_policy)

    async def get_staleness(self) -> StalenessBound | None:
        return await staleness.read_bound(self)

    async def held_entries(self) -> int:
        """Queue entries the claim gate refused and holds until it opens (their rollouts are still queued)."""
        try:
            info = await self._redis.xpending(self.keys.queue, GROUP)
        except ResponseError:
            return 0
        for consumer in info.get("consumers") or []:
            name = consumer.get("name")
            if name in (HELD_CONSUMER, HELD_CONSUMER.encode()):
                return int(consumer.get("pending", 0))
        return 0

    async def queue_depth(self) -> int:
        """Entries in the stream that no worker has read yet."""
        r = self._redis
        try:
            groups = await r.xinfo_groups(self.keys.queue)
        except ResponseError:
            return 0
        for group in groups:
            name = group.get("name") or group.get(b"name")
            if name in (GROUP, GROUP.encode()):
                lag = group.get("lag", group.get(b"lag"))
                if lag is not None:
                    return int(lag)
                return int(await r.xlen(self.keys.queue)) - int(group.get("pending", 0))
        return int(await r.xlen(self.keys.queue))

    async def pending_entries(self) -> int:
        """Entries read by some worker and not yet acknowledged."""
        try:
            info = await self._redis.xpending(self.keys.queue, GROUP)
        except ResponseError:
            return 0
        return int(info.get("pending", 0))

    # --- resources --------------------------------------------------------------------------------
    def _pack_resources(self, resources: NamedResources) -> bytes:
        if not isinstance(resources, dict):
            raise TypeError(f"resources must be a dict of name -> resource, got {type(resources).__name__}")
        validated = _resources_validator().validate_python(resources)
        plain = {name: res.model_dump(mode="json") for name, res in validated.items()}
        blob = self._pack_limited(plain, "resources", self.max_resources_bytes)
        probe = {"resources_id": b"r", "create_time": b"0", "update_time": b"0", "version": b"1", "resources": blob}
        codec.reads_back("resources", lambda: codec.resources_from_fields(probe, key=""))
        return blob

    async def add_resources(
        self, resources: NamedResources | str, named_resources: NamedResources | None = None
    ) -> ResourcesUpdate:
        if isinstance(resources, str):
            if named_resources is None:
                raise TypeError(f"add_resources({resources!r}, ...) needs the resources after the id")
            return await self.update_resources(resources, named_resources)
        if named_resources is not None:
            raise TypeError(
                "add_resources takes the resources once: add_resources(resources) or add_resources(id, resources)"
            )
        return await self.update_resources(new_resources_id(), resources)

    async def update_resources(self, resources_id: str, resources: NamedResources) -> ResourcesUpdate:
        check_id("resources_id", resources_id)
        blob = self._pack_resources(resources)
        await self._healthcheck()
        reply = await self.transitions.update_resources(resources_id, blob)
        return codec.resources_from_fields(codec.pairs(reply), key=self.keys.resources(resources_id))

    async def get_resources_by_id(self, resources_id: str) -> ResourcesUpdate | None:
        if not is_valid_id(resources_id, "resources_id"):
            return None
        key = self.keys.resources(resources_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            [reply] = await pipe.execute(raise_on_error=False)
        if not reply:
            return None
        return codec.resources_from_fields(codec.hash_fields(reply, key=key), key=key)

    async def get_latest_resources(self) -> ResourcesUpdate | None:
        latest = await self._redis.zrevrange(self.keys.resources_index, 0, 0)
        return await self.get_resources_by_id(latest[0].decode()) if latest else None

    async def query_resources(
        self,
        *,
        resources_id: str | None = None,
        resources_id_contains: str | None = None,
        sort_by: str | None = None,
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[ResourcesUpdate]:
        """Resources snapshots, by default in creation order (`create_time`, equal times by id).

        Cost: unfiltered, sorted by nothing, `create_time` or `update_time`, a page is O(log N + page)
        from the `idx:res:created` / `res:idx` sorted sets with an exact `total` (ZCARD); equal times
        cost the size of their tie group at the page's two ends. `resources_id` reads that one snapshot.
        `resources_id_contains` walks the ids (not the snapshots) in chunks of 1000, O(N) ids, then
        reads only the page when sorted by nothing or ascending `create_time`. Any other sort field
        (`resources_id`, `version`, `resources`), `resources_id_contains` with another sort, or a
        namespace written before `idx:res:created` existed reads every candidate snapshot, 1000 per
        round trip: O(N).
        """
        check_sort(sort_by, sort_order, ResourcesUpdate)
        check_paging(limit, offset)
        if resources_id is not None:
            wanted = is_valid_id(resources_id, "resources_id") and combine(
                text_matches(resources_id, None, resources_id_contains), "and"
            )
            found = await self._resources_of([resources_id]) if wanted else []
            return sort_and_page(found, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset)
        keys = self.keys
        by_update, by_creation = await paging.counts(self._redis, [keys.resources_index, keys.resources_created])
        # Snapshots stored before `idx:res:created` existed are missing from it: scan those namespaces.
        indexed = by_update == by_creation
        desc = sort_order == "desc"
        if (
            indexed
            and resources_id_contains is not None
            and (sort_by is None or (sort_by, desc) == ("create_time", False))
        ):
            ids = [i for i in await self._index_ids([keys.resources_created]) if resources_id_contains in i]
            if desc:
                ids.reverse()
            chosen = ids[offset:] if limit == -1 else ids[offset : offset + limit]
            page = await self._resources_of(chosen)
            return PaginatedResult(items=page, limit=limit, offset=offset, total=len(ids))
        if indexed and resources_id_contains is None and sort_by in (None, "create_time", "update_time"):
            if sort_by == "update_time":
                # Equal update times (distinct ids) go in creation order, which is not the set's member order.
                order = paging.Segment((keys.resources_index,), reverse=desc, exact=False)
            else:
                # A stable descending sort keeps equal create times in ascending id order: not ZREVRANGE's.
                order = paging.Segment((keys.resources_created,), reverse=desc, exact=sort_by is None or not desc)
            total, windows = await paging.page(self._redis, [order], limit=limit, offset=offset)
            items: list[ResourcesUpdate] = []
            for window in windows:
                found = await self._resources_of(window.ids)
                if window.exact:
                    items += found
                    continue
                found.sort(key=_creation)
                exact = sort_and_page(
                    found, sort_by=sort_by, sort_order=sort_order, limit=window.take, offset=window.skip
                )
                items += exact.items
            return PaginatedResult(items=items, limit=limit, offset=offset, total=total)
        ids = await self._index_ids([keys.resources_index])
        if resources_id_contains is not None:
            ids = [i for i in ids if resources_id_contains in i]
        found = sorted(await self._resources_of(ids), key=_creation)
        return sort_and_page(found, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset)

    async def _resources_of(self, ids: Sequence[str]) -> list[ResourcesUpdate]:
        """The snapshots of `ids` that exist, in that order, read 1000 per round trip; a corrupt one is
        logged and left out."""
        found: list[ResourcesUpdate] = []
        ids = [i for i in ids if is_valid_id(i)]
        for first in range(0, len(ids), paging.CHUNK):
            chunk = ids[first : first + paging.CHUNK]
            async with self._redis.pipeline(transaction=False) as pipe:
                for rid in chunk:
                    pipe.hgetall(self.keys.resources(rid))
                replies = await pipe.execute(raise_on_error=False)
            for rid, reply in zip(chunk, replies, strict=True):
                key = self.keys.resources(rid)
                update = reply and _listed(
                    lambda: codec.resources_from_fields(codec.hash_fields(reply, key=key), key=key)  # noqa: B023
                )
                if update:
                    found.append(update)
        return found

    # --- spans ------------------------------------------------------------------------------------
    def _new_span(self, span: Span, *, numbered_by_script: bool = False) -> NewSpan:
        """Validate and pack `span`; with `numbered_by_script`, for finish.lua to give it a sequence id."""
        if not isinstance(span, Span):
            raise TypeError(f"expected a Span, got {type(span).__name__}")
        for kind, value in (("rollout_id", span.rollout_id), ("attempt_id", span.attempt_id)):
            if not is_valid_id(value):
                missing = RolloutNotFound if kind == "rollout_id" else AttemptNotFound
                raise missing(f"{'Rollout' if kind == 'rollout_id' else 'Attempt'} {value!r:.100} not found")
        if not isinstance(span.span_id, str) or not span.span_id or len(span.span_id) > 256:
            raise ValueError(f"span_id must be a non-empty string of at most 256 characters, got {span.span_id!r:.100}")
        dump = span.model_dump()
        if numbered_by_script:
            # Last, as a fixed-width uint64: the script overwrites the value's 8 bytes with the id.
            del dump["sequence_id"]
            dump["sequence_id"] = SEQUENCE_PLACEHOLDER_VALUE
        elif not isinstance(span.sequence_id, int) or not 0 <= span.sequence_id <= MAX_SEQUENCE_ID:
            raise ValueError(f"sequence_id must be an integer from 0 to 2**52, got {span.sequence_id!r}")
        # A validated Span dumps to what validates again; the pack's own decode catches the keys that don't.
        blob = self._pack_limited(dump, f"span {span.span_id}", self.max_span_bytes)
        if numbered_by_script:
            if not blob.endswith(SEQUENCE_PLACEHOLDER):
                raise RuntimeError(f"span {span.span_id}: its packed sequence_id is not the placeholder")
            return NewSpan(span.rollout_id, span.attempt_id, span.span_id, None, blob)
        return NewSpan(span.rollout_id, span.attempt_id, span.span_id, span.sequence_id, blob)

    async def add_span(self, span: Span) -> Span | None:
        stored = await self.add_many_spans([span])
        return span if stored else None

    async def add_many_spans(self, spans: Sequence[Span]) -> Sequence[Span]:
        news = [self._new_span(span) for span in spans]
        if not news:
            return []
        verdicts = await self.transitions.add_spans(news)
        stored = []
        for span, verdict in zip(spans, verdicts, strict=True):
            if verdict:
                stored.append(span)
            else:
                logger.error(
                    "Duplicated span added: rollout %s attempt %s span %s was already stored; skipped",
                    span.rollout_id,
                    span.attempt_id,
                    span.span_id,
                )
        return stored

    async def add_otel_span(
        self, rollout_id: str, attempt_id: str, readable_span: Any, sequence_id: int | None = None
    ) -> Span | None:
        if sequence_id is None:
            sequence_id = await self.get_next_span_sequence_id(rollout_id, attempt_id)
        return await self.add_span(span_for_attempt(readable_span, rollout_id, attempt_id, sequence_id))

    async def get_next_span_sequence_id(self, rollout_id: str, attempt_id: str) -> int:
        check_id("rollout_id", rollout_id)
        return int(await self._redis.incr(self.keys.sequence(rollout_id)))

    async def get_many_span_sequence_ids(self, rollout_attempt_ids: Sequence[tuple[str, str]]) -> Sequence[int]:
        for rollout_id, _attempt_id in rollout_attempt_ids:
            check_id("rollout_id", rollout_id)
        if not rollout_attempt_ids:
            return []
        # One INCRBY per rollout (each atomic): its ids are the block below the counter's new value.
        wanted: dict[str, int] = {}
        for rollout_id, _attempt_id in rollout_attempt_ids:
            wanted[rollout_id] = wanted.get(rollout_id, 0) + 1
        async with self._redis.pipeline(transaction=False) as pipe:
            for rollout_id, n in wanted.items():
                pipe.incrby(self.keys.sequence(rollout_id), n)
            tops = [int(v) for v in await pipe.execute()]
        next_id = {rid: top - wanted[rid] + 1 for rid, top in zip(wanted, tops, strict=True)}
        out = []
        for rollout_id, _attempt_id in rollout_attempt_ids:
            out.append(next_id[rollout_id])
            next_id[rollout_id] += 1
        return out

    async def query_spans(
        self,
        rollout_id: str,
        attempt_id: str | None = None,
        *,
        trace_id: str | None = None,
        trace_id_contains: str | None = None,
        span_id: str | None = None,
        span_id_contains: str | None = None,
        parent_id: str | None = None,
        parent_id_contains: str | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        filter_logic: FilterLogic = "and",
        limit: int = -1,
        offset: int = 0,
        sort_by: str | None = "sequence_id",
        sort_order: SortOrder = "asc",
    ) -> PaginatedResult[Span]:
        """Spans of one rollout (one attempt, or all), by default in sequence order (equal sequence ids
        by span id, then attempt).

        Cost: unfiltered in sequence order a page is O(log n + page) from the attempts' span-order
        indexes and decodes only its spans; ascending, with the spans asked for in one attempt (the
        common case: one attempt, or only the latest has spans) and at most SPAN_CHUNK of them, it is
        one round trip (read_spans.lua), else four or five. A filter (ids, names, `_contains`) or
        another sort reads the whole trace (of `attempt_id`, when given), SPAN_CHUNK spans per round
        trip, decoding chunk by chunk: O(n) reads and msgpack decodes, and a Span validation per match.
        In ascending sequence order it keeps only the page's matches; any other order keeps every match
        to sort it. `total` is exact. A trace written before the order indexes existed is read by HSCAN,
        SPAN_CHUNK at a time, the same way.
        """
        check_choice("filter_logic", filter_logic, ("and", "or"))
        check_sort(sort_by, sort_order, Span)
        check_paging(limit, offset)
        empty: PaginatedResult[Span] = PaginatedResult(items=[], limit=limit, offset=offset, total=0)
        if not is_valid_id(rollout_id):
            return empty
        await self._healthcheck()
        key = self.keys.spans(rollout_id)
        filters = (trace_id, trace_id_contains, span_id, span_id_contains, parent_id, parent_id_contains)
        filtered = any(f is not None for f in (*filters, name, name_contains))
        indexed = sort_by in (None, "sequence_id") and not filtered
        if indexed and sort_order == "asc" and (attempt_id in (None, "latest") or is_valid_id(attempt_id)):
            page = await self._span_page_in_one_call(rollout_id, attempt_id, limit, offset)
            if page is not None:
                return page
        # One round trip: the latest attempt id, the size of the trace, the attempts (their order indexes).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.rollout(rollout_id), "latest")
            pipe.hlen(key)
            pipe.zrange(self.keys.attempts(rollout_id), 0, -1)
            latest, stored_count, attempt_ids = await pipe.execute(raise_on_error=False)
        if attempt_id == "latest":
            if isinstance(latest, Exception):
                raise codec.CorruptRecord(self.keys.rollout(rollout_id), str(latest))
            if latest is None:
                return empty
            attempt_id = latest.decode(errors="replace")
        in_index, aids = False, []
        if not isinstance(stored_count, Exception) and not isinstance(attempt_ids, Exception):
            aids = _ids(attempt_ids)
            orders = [self.keys.span_order(rollout_id, aid) for aid in aids]
            # A trace written before the order indexes existed is not in them: it is scanned below.
            in_index = sum(await paging.counts(self._redis, orders)) == stored_count
        chosen = aids if attempt_id is None else [attempt_id]
        if in_index and indexed:
            return await self._span_page(rollout_id, chosen, sort_by, sort_order, limit, offset)

        def matches(get: Callable[[str], Any]) -> bool:
            verdicts = text_matches(get("trace_id"), trace_id, trace_id_contains)
            verdicts += text_matches(get("span_id"), span_id, span_id_contains)
            verdicts += text_matches(get("parent_id"), parent_id, parent_id_contains)
            verdicts += text_matches(get("name"), name, name_contains)
            return combine(verdicts, filter_logic)

        # Walked in sequence order and listed so (ascending), only the page's matches are kept.
        in_order = in_index and sort_by in (None, "sequence_id") and sort_order == "asc"
        chunks = self._spans_in_order(rollout_id, chosen) if in_index else self._spans_scanned(rollout_id, attempt_id)
        kept: list[Span] = []
        total = 0
        async for chunk in chunks:
            for field, blob in chunk:
                # Validating a span costs ~20x unpacking it: a span whose plain fields do not match is skipped.
                texts = _span_texts(blob) if filtered else None
                if texts is not None and not matches(texts.get):
                    continue
                span = _listed(lambda: codec.span_from_blob(blob, key=f"{key} field {field}"))  # noqa: B023
                if span is None or not matches(functools.partial(getattr, span)):
                    continue
                if not in_order or (total >= offset and (limit == -1 or total < offset + limit)):
                    kept.append(span)
                total += 1
        if in_order:
            return PaginatedResult(items=kept, limit=limit, offset=offset, total=total)
        if not in_index:
            # Scanned in hash order; the order indexes' order is (sequence id, span id).
            kept.sort(key=lambda span: (span.sequence_id, span.span_id))
        return sort_and_page(kept, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset)

    async def _span_page_in_one_call(
        self, rollout_id: str, attempt_id: str | None, limit: int, offset: int
    ) -> PaginatedResult[Span] | None:
        """The page in one script call (read_spans.lua) when one attempt's order index holds the trace and the
        page is at most SPAN_CHUNK spans, the common case; None: read it the long way."""
        try:
            reply = await self.transitions.read_spans(
                rollout_id, "" if attempt_id is None else attempt_id, offset, limit, SPAN_CHUNK
            )
        except ResponseError:
            return None  # a key of the wrong type: the long way names it
        if reply == "none":
            return PaginatedResult(items=[], limit=limit, offset=offset, total=0)
        if isinstance(reply, str):
            return None
        total, pairs = reply
        key = self.keys.spans(rollout_id)
        items = []
        for field, blob in pairs:
            span = blob and _listed(lambda: codec.span_from_blob(blob, key=f"{key} field {field}"))  # noqa: B023
            if span:
                items.append(span)
        return PaginatedResult(items=items, limit=limit, offset=offset, total=total)

    async def _spans_in_order(self, rollout_id: str, attempt_ids: list[str]) -> AsyncIterator[list[tuple[str, bytes]]]:
        """The trace's (field, span) pairs in its order indexes' merged order, SPAN_CHUNK per HMGET."""
        key = self.keys.spans(rollout_id)
        orders = [self.keys.span_order(rollout_id, aid) for aid in attempt_ids]
        fields = [f"{attempt_ids[k]}:{sid}" for sid, k in await paging.all_entries(self._redis, orders)]
        async for chunk in self._span_blobs(key, fields):
            yield [(field, blob) for field, blob in chunk if blob is not None]

    async def _spans_scanned(self, rollout_id: str, attempt_id: str | None) -> AsyncIterator[list[tuple[str, bytes]]]:
        """The trace's (field, span) pairs of one attempt (None: all) in hash order, by HSCAN of SPAN_CHUNK."""
        key = self.keys.spans(rollout_id)
        prefix = None if attempt_id is None else attempt_id + ":"
        seen: set[str] = set()  # HSCAN may return a field twice (while the hash is rehashed)
        cursor = 0
        while True:
            try:
                cursor, part = await self._redis.hscan(key, cursor, count=SPAN_CHUNK)
            except ResponseError as exc:  # WRONGTYPE: the key is not a hash
                raise codec.CorruptRecord(key, str(exc).splitlines()[0]) from exc
            chunk = []
            for raw, blob in part.items():
                field = raw.decode(errors="replace")
                if field not in seen and (prefix is None or field.startswith(prefix)):
                    seen.add(field)
                    chunk.append((field, blob))
            yield chunk
            if int(cursor) == 0:
                return

    async def _span_page(
        self, rollout_id: str, attempt_ids: list[str], sort_by: str | None, sort_order: str, limit: int, offset: int
    ) -> PaginatedResult[Span]:
        """A page of a trace in sequence order from its attempts' order indexes (merged): only the page's
        spans are read and decoded (and, descending by sequence id, those sharing a sequence id with its ends)."""
        orders = tuple(self.keys.span_order(rollout_id, aid) for aid in attempt_ids)
        desc = sort_order == "desc"
        # A stable descending sort by sequence id keeps equal ids in ascending order: not ZREVRANGE's.
        order = paging.Segment(orders, reverse=desc, exact=not (desc and sort_by == "sequence_id"))
        total, windows = await paging.page(self._redis, [order], limit=limit, offset=offset)
        items: list[Span] = []
        for window in windows:
            fields = [f"{attempt_ids[k]}:{sid}" for sid, k in zip(window.ids, window.origins, strict=True)]
            spans_of = await self._spans_of(rollout_id, fields)
            found = [(span, k) for span, k in zip(spans_of, window.origins, strict=True) if span is not None]
            if window.exact:
                items += [span for span, _ in found]
                continue
            found.sort(key=lambda pair: (pair[0].sequence_id, pair[0].span_id, pair[1]))
            spans = [span for span, _ in found]
            items += sort_and_page(
                spans, sort_by=sort_by, sort_order=sort_order, limit=window.take, offset=window.skip
            ).items
        return PaginatedResult(items=items, limit=limit, offset=offset, total=total)

    async def _spans_of(self, rollout_id: str, fields: list[str]) -> list[Span | None]:
        """The spans of `fields`, in that order; None for one missing, or corrupt (logged)."""
        key = self.keys.spans(rollout_id)
        found: list[Span | None] = []
        async for chunk in self._span_blobs(key, fields):
            for field, blob in chunk:
                if blob is None:
                    found.append(None)
                    continue
                found.append(_listed(lambda: codec.span_from_blob(blob, key=f"{key} field {field}")))  # noqa: B023
        return found

    async def _span_blobs(self, key: str, fields: list[str]) -> AsyncIterator[list[tuple[str, bytes | None]]]:
        """(field, stored span or None) of `fields` in order, SPAN_CHUNK per HMGET."""
        for first in range(0, len(fields), SPAN_CHUNK):
            part = fields[first : first + SPAN_CHUNK]
            yield list(zip(part, await self._redis.hmget(key, part), strict=True))

    # --- workers ----------------------------------------------------------------------------------
    async def query_workers(
        self,
        *,
        status_in: Sequence[WorkerStatus] | None = None,
        worker_id_contains: str | None = None,
        filter_logic: FilterLogic = "and",
        sort_by: str | None = None,
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[Worker]:
        """Workers. Unfiltered and unsorted (first-seen order) a page is O(log N + page) from the workers
        index; a status or id filter or a sort reads every worker, 1000 per round trip: O(N).

        N is the fleet (every worker id ever seen), which grows with the workers started, not with the
        rollouts run; a per-status index would cost every claim and attempt end two more writes.
        """
        check_statuses("status_in", status_in, WORKER_STATUSES)
        check_choice("filter_logic", filter_logic, ("and", "or"))
        check_sort(sort_by, sort_order, Worker)
        check_paging(limit, offset)
        await self._healthcheck()
        if status_in is None and worker_id_contains is None and sort_by is None:
            # The workers index is in first-seen order, the contract's default: a page is a ZRANGE of it.
            order = paging.Segment((self.keys.workers_index,), reverse=sort_order == "desc")
            total, windows = await paging.page(self._redis, [order], limit=limit, offset=offset)
            page = await self._workers([i for w in windows for i in w.ids if is_valid_id(i)], listing=True)
            return PaginatedResult(items=page, limit=limit, offset=offset, total=total)
        ids = await self._index_ids([self.keys.workers_index])
        workers: list[Worker] = []
        for i in range(0, len(ids), paging.CHUNK):
            workers += await self._workers(ids[i : i + paging.CHUNK], listing=True)
        wanted = None if status_in is None else set(status_in)

        def matches(w: Worker) -> bool:
            verdicts = [] if wanted is None else [w.status in wanted]
            verdicts += text_matches(w.worker_id, None, worker_id_contains)
            return combine(verdicts, filter_logic)

        workers = [w for w in workers if matches(w)]
        return sort_and_page(workers, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset)

    async def _workers(self, ids: Sequence[str], *, listing: bool) -> list[Worker]:
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for wid in ids:
                pipe.hgetall(self.keys.worker(wid))
            replies = await pipe.execute(raise_on_error=False)
        found = []
        for wid, reply in zip(ids, replies, strict=True):
            if not reply:
                continue
            key = self.keys.worker(wid)

            def build() -> Worker:
                return codec.worker_from_fields(codec.hash_fields(reply, key=key), key=key)  # noqa: B023

            worker = _listed(build) if listing else build()
            if worker is not None:
                found.append(worker)
        return found

    async def get_worker_by_id(self, worker_id: str) -> Worker | None:
        if not is_valid_id(worker_id, "worker_id"):
            return None
        found = await self._workers([worker_id], listing=False)
        return found[0] if found else None

    async def update_worker(self, worker_id: str, heartbeat_stats: dict[str, Any] = UNSET) -> Worker:
        check_id("worker_id", worker_id)
        if heartbeat_stats is not UNSET and not isinstance(heartbeat_stats, dict):
            raise TypeError(f"heartbeat_stats must be a dict, got {heartbeat_stats!r:.100}")
        stats_blob = b""
        if heartbeat_stats is not UNSET:
            stats_blob = self._pack_limited(heartbeat_stats, "heartbeat_stats", 1 << 20)
            probe = {"worker_id": worker_id.encode(), "heartbeat_stats": stats_blob}
            codec.reads_back(f"heartbeat_stats of worker {worker_id}", lambda: codec.worker_from_fields(probe, key=""))
        now = time.time()
        key = self.keys.worker(worker_id)
        await self._checked()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "worker_id", worker_id)
            pipe.hsetnx(key, "status", "unknown")
            pipe.zadd(self.keys.workers_index, {worker_id: now}, nx=True)
            # Non-decreasing heartbeat: a late call never moves it backwards.
            pipe.hset(key, "last_heartbeat_time", _f(now))
            if heartbeat_stats is not UNSET:
                pipe.hset(key, "heartbeat_stats", stats_blob)
            pipe.hgetall(key)
            replies = await pipe.execute()
        return codec.worker_from_fields({k.decode(): v for k, v in replies[-1].items()}, key=key)


REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


def _ids(members: list[bytes]) -> list[str]:
    """Members of an id index; one that is not a valid id (planted by hand) names no record."""
    decoded = (m.decode(errors="replace") for m in members)
    return [i for i in decoded if is_valid_id(i)]


_SPAN_TEXTS = ("trace_id", "span_id", "parent_id", "name")


def _span_texts(blob: bytes) -> dict[str, str | None] | None:
    """The fields span filters read, from the stored span unvalidated; None unless each is a str or absent.

    Validation keeps a str as it is and refuses an absent required field, so a span these fields do not
    match would not be listed either; anything else (bytes, numbers, a corrupt blob) is left to it.
    """
    try:
        raw = codec.unpack(blob, key="")
    except codec.CorruptRecord:
        return None
    if not isinstance(raw, dict):
        return None
    texts = {name: raw.get(name) for name in _SPAN_TEXTS}
    return texts if all(v is None or isinstance(v, str) for v in texts.values()) else None


def _creation(update: ResourcesUpdate) -> tuple[float, str]:
    """The listing's default order of resources snapshots."""
    return (update.create_time, update.resources_id)


def _count(key: str, reply: Any) -> int:
    try:
        if isinstance(reply, Exception):
            raise ValueError(str(reply))
        return int(reply)
    except ValueError as exc:
        logger.error("corrupt counter in Redis key %r: %s; counted as 0", key, exc)
        return 0


async def _batched(iterator: Any, size: int) -> Any:
    batch: list[Any] = []
    async for item in iterator:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
