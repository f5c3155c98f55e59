"""The worker lease API: claim queue entries, keep them leased while their attempts run, give them back.

A claimed entry stays pending under its worker's consumer name until the attempt ends; a worker that
stops renewing it (dead, frozen) loses it to the watchdog's reclaim after `lease_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ..types import ATTEMPT_STATUSES
from . import codec, embedded, gate
from .keys import check_id, new_attempt_id
from .query import check_choice
from .schema import GROUP
from .transitions import Finished, FinishRequest, StreamEntry

if TYPE_CHECKING:
    from ..types import AttemptedRollout, AttemptStatus, Span
    from .redis import RedisLightningStore


@dataclass(frozen=True)
class ResourcesRef:
    """The resources snapshot a claimed rollout runs with, as the claim found it: its pinned one or the
    latest. `resources_id` '' means there are none; `version` '' that the pinned snapshot does not exist.
    A worker holding this (id, version, update_time) already need not read it again."""

    resources_id: str
    version: str
    update_time: str


@dataclass(frozen=True)
class Claim:
    """A rollout a worker claimed from the stream, with the entry it must keep leased (and, from `claim`,
    the resources snapshot it runs with; None when not known)."""

    entry_id: str
    rollout: AttemptedRollout
    resources: ResourcesRef | None = None


@dataclass(frozen=True)
class Finish:
    """A worker's end of a claimed attempt: its spans and status, stored only while it holds the lease.

    A span whose `sequence_id` is negative gets a fresh id of the rollout's counter in the same step, in
    their order, as `get_many_span_sequence_ids` just before would give them; the others keep theirs (so
    an explicit id may equal a fresh one: the contract's ties, ordered by span id).
    """

    consumer: str
    claim: Claim
    status: AttemptStatus
    spans: Sequence[Span] = ()
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class FinishOutcome:
    """What `finish_many` did with one Finish. `held` False: the lease was lost first, nothing was written.
    `sequence_ids`: the ids given to the spans that had none, in their order (empty for a resend that
    found its finish already applied, `resent`); `duplicates`: spans skipped, their span id already stored."""

    held: bool
    sequence_ids: list[int]
    resent: bool = False
    duplicates: int = 0


class Leases:
    """The lease API of one store (its namespace, connections and Lua transitions)."""

    def __init__(self, store: RedisLightningStore) -> None:
        self.store = store
        self._gates: dict[str, gate.GateView] = {}

    async def _read_new(self, consumer: str, count: int, block_ms: int) -> Any:
        store = self.store
        lc = await store._checked()
        queue = store.keys.queue
        await lc.ensure_group(queue)
        started = time.monotonic()
        try:
            reply = await lc.blocking.xreadgroup(GROUP, consumer, {queue: ">"}, count=count, block=block_ms)
        except ResponseError as exc:
            if not embedded.is_missing_group(exc):
                raise
            # Redis came back empty (restart without persistence, or a purge): make the group again.
            lc.group_ready = False
            await lc.ensure_group(queue)
            reply = await lc.blocking.xreadgroup(GROUP, consumer, {queue: ">"}, count=count, block=block_ms)
        waited_ms = (time.monotonic() - started) * 1000
        if not reply and await embedded.wait_out_early_reply(lc.blocking, queue, waited_ms, block_ms):
            reply = await lc.blocking.xreadgroup(GROUP, consumer, {queue: ">"}, count=count)
        return reply

    async def claim(
        self, *, consumer: str, worker_id: str | None = None, count: int = 1, block_ms: int = 1000
    ) -> list[Claim]:
        """Block up to `block_ms` for new stream entries and claim them; each claim stays leased to `consumer`.

        Through the claim gate (gate.py): while claims are paused or the staleness bound has no slot, the
        call waits on the gate stream instead of reading, and returns [] after at most `block_ms`; held
        entries are claimed before new ones are read.
        """
        check_id("consumer", consumer)
        view = self._gates.setdefault(consumer, gate.GateView())
        started = time.monotonic()
        if view.serve_first:
            reply = await self._claim(consumer, worker_id, [], count, view)
            if reply:
                return reply
            if view.gated:
                await self._wait_gate(view, block_ms, started)
                return []
        reply_entries = await self._read_new(consumer, count, max(1, block_ms))
        entries = [
            StreamEntry(entry_id=entry_id, rollout_id=fields.get(b"rid", b"").decode(), attempt_id=new_attempt_id())
            for _stream, stream_entries in reply_entries or []
            for entry_id, fields in stream_entries
        ]
        if not entries:
            return []
        out = await self._claim(consumer, worker_id, entries, len(entries), view)
        if not out and view.gated:
            await self._wait_gate(view, block_ms, started)
        return out

    async def _claim(
        self, consumer: str, worker_id: str | None, entries: list[StreamEntry], want: int, view: gate.GateView
    ) -> list[Claim]:
        store = self.store
        reply = await store.transitions.claim(
            consumer=consumer,
            worker_id=worker_id,
            entries=entries,
            want=want,
            # Held entries are older than any read one: a claim takes them first, whoever held them.
            held_attempt_ids=[new_attempt_id() for _ in range(want)],
        )
        gate.report(view, reply, store.namespace, f"worker {worker_id or consumer}")
        refs: list[ResourcesRef | None] = [ResourcesRef(*r) for r in reply.resources or []]
        refs += [None] * (len(reply.claims) - len(refs))
        out = []
        for pair, ref in zip(reply.claims, refs, strict=True):
            rollout = await store._claimed(pair)
            if rollout is not None:
                entry = codec.pairs(pair[1]).get("entry", b"")
                out.append(Claim(entry_id=entry.decode(), rollout=rollout, resources=ref))
        return out

    async def _wait_gate(self, view: gate.GateView, block_ms: int, started: float) -> None:
        left_ms = int(block_ms - (time.monotonic() - started) * 1000)
        if left_ms > 0:
            lc = await self.store._checked()
            await gate.wait(lc.blocking, self.store.keys.gate, view.gate_id, left_ms)

    async def renew_leases(self, consumer: str, entry_ids: Sequence[str]) -> set[str]:
        """Reset the idle time of entries `consumer` holds; returns those it still holds."""
        if not entry_ids:
            return set()
        held = await self.store._redis.xclaim(
            self.store.keys.queue, GROUP, consumer, min_idle_time=0, message_ids=list(entry_ids), justid=True
        )
        return {h.decode() if isinstance(h, bytes) else str(h) for h in held}

    def _finish_request(self, finish: Finish) -> tuple[FinishRequest, int]:
        """The script's request for `finish` and how many of its spans the script numbers; a ValueError or
        TypeError names what cannot be stored (before anything is sent)."""
        check_id("consumer", finish.consumer)
        check_choice("attempt status", finish.status, ATTEMPT_STATUSES)
        ar = finish.claim.rollout
        rid, aid = ar.rollout_id, ar.attempt.attempt_id
        news = []
        for span in finish.spans:
            if (getattr(span, "rollout_id", None), getattr(span, "attempt_id", None)) != (rid, aid):
                raise ValueError(f"span {getattr(span, 'span_id', span)!r:.100} is not of rollout {rid} attempt {aid}")
            numbered = isinstance(span.sequence_id, int) and span.sequence_id < 0
            news.append(self.store._new_span(span, numbered_by_script=numbered))
        metadata = None if finish.metadata is None else codec.attempt_metadata(aid, finish.metadata)
        request = FinishRequest(finish.consumer, finish.claim.entry_id, rid, aid, finish.status, metadata, news)
        return request, sum(1 for n in news if n.sequence_id is None)

    async def finish_many(self, finishes: Sequence[Finish]) -> list[FinishOutcome | Exception]:
        """Store the spans and end the attempt of each Finish whose consumer still holds its entry, all in one
        round trip (one script call each, atomic per attempt). Per Finish its outcome, or the error that
        stopped it (a ValueError/TypeError for what cannot be stored, OutOfMemoryError, NotFound); an
        unreachable Redis raises for all. A resend of the same Finish is safe."""
        out: list[FinishOutcome | Exception] = [ValueError("not sent") for _ in finishes]
        sent: list[tuple[int, int]] = []  # (index, spans the script numbers)
        requests = []
        for i, finish in enumerate(finishes):
            try:
                request, numbered = self._finish_request(finish)
            except (ValueError, TypeError) as exc:
                out[i] = exc
                continue
            sent.append((i, numbered))
            requests.append(request)
        if requests:
            await self.store._healthcheck()
            replies = await self.store.transitions.finish_many(requests)
            for (i, numbered), reply in zip(sent, replies, strict=True):
                if isinstance(reply, Exception):
                    out[i] = reply
                    continue
                verdict, first, duplicates = reply
                ids = list(range(first, first + numbered)) if verdict is Finished.DONE else []
                out[i] = FinishOutcome(
                    held=verdict is not Finished.NOT_HELD,
                    sequence_ids=ids,
                    resent=verdict is Finished.RESENT,
                    duplicates=duplicates,
                )
        return out

    async def finish(self, finish: Finish) -> FinishOutcome:
        """`finish_many` of one Finish; its error is raised."""
        [outcome] = await self.finish_many([finish])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def release(self, rollout_id: str, attempt_id: str, metadata: dict[str, Any] | None = None) -> bool:
        """Give back a live attempt this worker cannot finish: it ends `unresponsive`, its rollout is requeued."""
        check_id("rollout_id", rollout_id)
        check_id("attempt_id", attempt_id)
        blob = None if metadata is None else codec.attempt_metadata(attempt_id, metadata)
        return await self.store.transitions.release(rollout_id, attempt_id, blob)
