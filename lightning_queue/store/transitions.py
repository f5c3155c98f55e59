"""One typed method per Lua script: the only place that knows each script's ARGV order and encodings."""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from . import codec, errors
from .keys import Keys


class Leave(enum.Enum):
    """A field the update leaves as it is (as distinct from None, which deletes or clears it)."""

    LEAVE = "leave"


LEAVE: Final = Leave.LEAVE
# In update_rollout's field pairs, this value deletes the field (a msgpack blob never equals it).
_DELETE = "\0"

# A script reply of {rollout fields, attempt fields}; decoded by the store.
Pair = list[Any]


def _f(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True)
class ScriptConfig:
    """A RolloutConfig as the scripts store it: the packed whole plus the scalars Lua reads."""

    packed: bytes
    max_attempts: int
    retry_condition: Sequence[str]
    timeout_seconds: float | None
    unresponsive_seconds: float | None

    @classmethod
    def of(cls, config: Any) -> ScriptConfig:
        """From a validated RolloutConfig."""
        return cls(
            packed=codec.pack(config.model_dump(mode="json")),
            max_attempts=config.max_attempts,
            retry_condition=tuple(config.retry_condition),
            timeout_seconds=config.timeout_seconds,
            unresponsive_seconds=config.unresponsive_seconds,
        )

    def _slots(self) -> list[Any]:
        # The retry rule looks up ",status," in this string.
        return [
            self.packed,
            str(self.max_attempts),
            "," + ",".join(self.retry_condition) + ",",
            "" if self.timeout_seconds is None else _f(self.timeout_seconds),
            "" if self.unresponsive_seconds is None else _f(self.unresponsive_seconds),
        ]


@dataclass(frozen=True)
class NewRollout:
    """A rollout create.lua writes. `resources_id` None means the latest resources at creation."""

    rollout_id: str
    input: bytes
    mode: str | None
    resources_id: str | None
    config: ScriptConfig
    metadata: bytes | None

    def _slots(self) -> list[Any]:
        return [
            self.rollout_id,
            self.input,
            self.mode or "",
            "0" if self.resources_id is None else "1",
            self.resources_id or "",
            *self.config._slots(),
            b"" if self.metadata is None else self.metadata,
        ]


_CREATE_SLOTS = 11  # len(NewRollout._slots()); create.lua strides by it


@dataclass(frozen=True)
class RolloutChanges:
    """Fields update_rollout.lua sets; None deletes an optional field, LEAVE keeps it."""

    input: bytes | Leave = LEAVE
    mode: str | Leave | None = LEAVE
    resources_id: str | Leave | None = LEAVE
    config: ScriptConfig | Leave = LEAVE
    metadata: bytes | Leave | None = LEAVE

    def _pairs(self) -> list[Any]:
        out: list[Any] = []

        def put(field: str, value: Any) -> None:
            out.extend([field, _DELETE if value is None or value == "" else value])

        if not isinstance(self.input, Leave):
            out += ["input", self.input]
        if not isinstance(self.mode, Leave):
            put("mode", self.mode)
        if not isinstance(self.resources_id, Leave):
            put("resources_id", self.resources_id)
        if not isinstance(self.config, Leave):
            packed, max_attempts, retry, timeout, unresponsive = self.config._slots()
            out += ["config", packed, "cfg_max", max_attempts, "cfg_retry", retry]
            put("cfg_timeout", timeout)
            put("cfg_unresponsive", unresponsive)
        if not isinstance(self.metadata, Leave):
            put("metadata", self.metadata)
        return out


@dataclass(frozen=True)
class AttemptChanges:
    """Fields update_attempt.lua sets; worker_id None clears the attempt's worker."""

    status: str | None = None
    worker_id: str | Leave | None = LEAVE
    last_heartbeat_time: float | None = None
    metadata: bytes | Leave = LEAVE


@dataclass(frozen=True)
class StreamEntry:
    """A queue entry a worker read, to claim as attempt `attempt_id` of `rollout_id`."""

    entry_id: str | bytes
    rollout_id: str
    attempt_id: str


@dataclass(frozen=True)
class NewSpan:
    """A packed span. `sequence_id` None: finish.lua numbers it (its blob ends in SEQUENCE_PLACEHOLDER)."""

    rollout_id: str
    attempt_id: str
    span_id: str
    sequence_id: int | None
    blob: bytes


@dataclass(frozen=True)
class FinishRequest:
    """One leased attempt's end as finish.lua takes it: the lease to check, the spans to store, the status."""

    consumer: str
    entry_id: str
    rollout_id: str
    attempt_id: str
    status: str
    metadata: bytes | None
    spans: Sequence[NewSpan]

    def _args(self) -> list[Any]:
        args: list[Any] = [self.consumer, self.entry_id, self.rollout_id, self.attempt_id, self.status]
        args += ["0", b""] if self.metadata is None else ["1", self.metadata]
        for span in self.spans:
            args += [span.span_id, "" if span.sequence_id is None else span.sequence_id, span.blob]
        return args


class Finished(enum.IntEnum):
    """finish.lua's verdict on one request."""

    NOT_HELD = 0  # the consumer no longer held the entry: nothing was written
    DONE = 1  # spans stored, attempt ended
    RESENT = 2  # a resend of a finish already applied (the client lost its reply)


@dataclass(frozen=True)
class GateReply:
    """A claim script's reply (gate_reply in common.lua): its claims and the state of the claim gate.

    `state` is '' (open), 'paused', 'full' (no slot under the staleness bound for a rollout waiting) or
    'held' (open, but held entries wait); `gate_id` is the gate stream id to wait for wake-ups after.
    """

    claims: list[Pair]
    state: str
    gate_id: str
    expired_holder: str | None
    failed_stale: list[str]
    # claim.lua only: per claim the resources snapshot it runs with, (id, version, update_time) as strings.
    resources: list[tuple[str, str, str]] | None = None

    @classmethod
    def of(cls, reply: Any) -> GateReply:
        claims, state, gate_id, expired, failed, *rest = reply
        return cls(
            claims=list(claims),
            state=codec.decoded(state),
            gate_id=codec.decoded(gate_id),
            expired_holder=codec.decoded(expired) or None,
            failed_stale=[codec.decoded(r) for r in failed],
            resources=[(codec.decoded(i), codec.decoded(v), codec.decoded(t)) for i, v, t in rest[0]] if rest else None,
        )


# Span bytes per finish pipeline: a batch of long traces goes in a few round trips, not one huge request.
PIPELINE_BYTES = 8 << 20


def _by_size(indexes: list[int], requests: Sequence[FinishRequest]) -> list[list[int]]:
    """`indexes` in order, cut into pipelines of at most PIPELINE_BYTES of spans (a bigger request alone)."""
    parts: list[list[int]] = []
    size = 0
    for i in indexes:
        weight = sum(len(span.blob) for span in requests[i].spans)
        if not parts or (size + weight > PIPELINE_BYTES and parts[-1]):
            parts.append([])
            size = 0
        parts[-1].append(i)
        size += weight
    return parts


class Transitions:
    """The Lua transitions of one namespace. `script(name)` gives the loaded script of the running loop."""

    def __init__(self, keys: Keys, script: Callable[[str], Awaitable[AsyncScript]]) -> None:
        self.keys = keys
        self._script = script

    async def _call(self, name: str, *args: Any) -> Any:
        """EVALSHA (loading again after NOSCRIPT), with ARGV[1] the key prefix and ARGV[2] now."""
        script = await self._script(name)
        try:
            return await script(keys=[self.keys.queue], args=[self.keys.prefix, _f(time.time()), *args])
        except ResponseError as exc:
            raise errors.from_reply(exc) from None

    async def create(
        self,
        rollouts: Sequence[NewRollout],
        *,
        start: bool = False,
        attempt_id: str | None = None,
        worker_id: str | None = None,
    ) -> list[Pair]:
        """Enqueue `rollouts`, or with `start` give the one rollout attempt `attempt_id` at once."""
        if start and (len(rollouts) != 1 or attempt_id is None):
            raise ValueError("starting a rollout takes one rollout and its first attempt id")
        args: list[Any] = ["start" if start else "enqueue", worker_id or "", attempt_id or ""]
        for rollout in rollouts:
            slots = rollout._slots()
            assert len(slots) == _CREATE_SLOTS
            args += slots
        return list(await self._call("create", *args))

    async def dequeue(
        self, *, consumer: str, worker_id: str | None, attempt_ids: Sequence[str], idle_if_empty: bool
    ) -> GateReply:
        """Claim up to len(attempt_ids) entries (held ones first), without lease; FIFO."""
        flag = "1" if idle_if_empty else "0"
        reply = await self._call("dequeue", consumer, worker_id or "", len(attempt_ids), flag, *attempt_ids)
        return GateReply.of(reply)

    async def claim(
        self,
        *,
        consumer: str,
        worker_id: str | None,
        entries: Sequence[StreamEntry],
        want: int | None = None,
        held_attempt_ids: Sequence[str] = (),
    ) -> GateReply:
        """Claim up to `want` (default: len(entries)) entries for `consumer`: held ones first (each taking
        one of `held_attempt_ids`), then those it read (`entries`); each attempt keeps its entry leased."""
        want = len(entries) if want is None else want
        args: list[Any] = [want, len(held_attempt_ids), *held_attempt_ids]
        for entry in entries:
            args += [entry.entry_id, entry.rollout_id, entry.attempt_id]
        return GateReply.of(await self._call("claim", consumer, worker_id or "", *args))

    async def start_attempt(self, rollout_id: str, attempt_id: str, worker_id: str | None) -> Pair:
        return list(await self._call("start_attempt", rollout_id, attempt_id, worker_id or ""))

    async def update_rollout(self, rollout_id: str, status: str | None, changes: RolloutChanges) -> Pair:
        return list(await self._call("update_rollout", rollout_id, status or "", *changes._pairs()))

    async def update_attempt(self, rollout_id: str, attempt_id: str, changes: AttemptChanges) -> list[Any]:
        """`attempt_id` may be "latest". Returns the attempt's fields."""
        worker_given = not isinstance(changes.worker_id, Leave)
        heartbeat = changes.last_heartbeat_time
        return list(
            await self._call(
                "update_attempt",
                rollout_id,
                attempt_id,
                changes.status or "",
                "1" if worker_given else "0",
                changes.worker_id if isinstance(changes.worker_id, str) else "",
                "" if heartbeat is None else _f(heartbeat),
                "0" if isinstance(changes.metadata, Leave) else "1",
                b"" if isinstance(changes.metadata, Leave) else changes.metadata,
            )
        )

    async def add_spans(self, spans: Sequence[NewSpan]) -> list[bool]:
        """Per span whether it was stored (False: a duplicate)."""
        args: list[Any] = []
        for span in spans:
            args += [span.rollout_id, span.attempt_id, span.span_id, span.sequence_id, span.blob]
        return [bool(v) for v in await self._call("add_spans", *args)]

    async def finish_many(self, requests: Sequence[FinishRequest]) -> list[tuple[Finished, int, int] | Exception]:
        """finish.lua for each request, in one pipeline (one round trip; more only past PIPELINE_BYTES of
        spans). Per request (verdict, first sequence id assigned or 0, spans skipped as duplicates) or the
        error it got; a lost connection raises for all."""
        out: list[tuple[Finished, int, int] | Exception] = [ValueError("not sent") for _ in requests]
        script = await self._script("finish")
        client = script.registered_client
        todo = list(range(len(requests)))
        for attempt in range(2):
            unknown = []
            for part in _by_size(todo, requests):
                now = _f(time.time())
                async with client.pipeline(transaction=False) as pipe:
                    for i in part:
                        pipe.evalsha(script.sha, 1, self.keys.queue, self.keys.prefix, now, *requests[i]._args())
                    replies = await pipe.execute(raise_on_error=False)
                for i, reply in zip(part, replies, strict=True):
                    if isinstance(reply, NoScriptError) and attempt == 0:
                        unknown.append(i)  # not run: Redis restarted or flushed its scripts
                    elif isinstance(reply, ResponseError):
                        out[i] = errors.from_reply(reply)
                    elif isinstance(reply, Exception):
                        out[i] = reply
                    else:
                        out[i] = (Finished(int(reply[0])), int(reply[1]), int(reply[2]))
            if not unknown:
                break
            script.sha = await client.script_load(script.script)
            todo = unknown
        return out

    async def sweep(self, *, lock_ms: int, lease_ms: int, reaper: str) -> tuple[int, int]:
        """(verdicts, reclaimed entries), or (-1, 0) if another sweep holds the lock."""
        verdicts, reclaimed = await self._call("sweep", lock_ms, lease_ms, reaper)
        return int(verdicts), int(reclaimed)

    async def read_rollouts(self, rollout_ids: Sequence[str]) -> list[list[Any]]:
        """Per id {rollout, latest attempt} fields, or {{}, {}, error, key} for a key that is not a hash."""
        return list(await self._call("read_rollouts", *rollout_ids))

    async def read_spans(
        self, rollout_id: str, attempt: str, offset: int, limit: int, most: int
    ) -> tuple[int, list[tuple[str, bytes | None]]] | str:
        """A page of the trace in sequence order from its one order index holding spans: (total, [(field,
        span or None)]). `attempt` is an id, 'latest' or '' (all). 'none' when 'latest' names no attempt,
        'slow' when the script cannot answer (see read_spans.lua): read it the long way."""
        reply = await self._call("read_spans", rollout_id, attempt, offset, limit, most)
        verdict = codec.decoded(reply[0])
        if verdict != "ok":
            return verdict
        rest = reply[2:]
        return int(reply[1]), [(codec.decoded(rest[i]), rest[i + 1]) for i in range(0, len(rest), 2)]

    async def update_resources(self, resources_id: str, blob: bytes) -> list[Any]:
        return list(await self._call("update_resources", resources_id, blob))

    async def release(self, rollout_id: str, attempt_id: str, metadata: bytes | None) -> bool:
        """False if the attempt had already ended or is unknown."""
        return bool(await self._call("release", rollout_id, attempt_id, b"" if metadata is None else metadata))

    async def pause(self, op: str, holder: str, ttl_ms: int) -> list[Any]:
        """The claims pause (pause.lua): `op` is pause, renew, resume or status; see the script for replies."""
        return list(await self._call("pause", op, holder, ttl_ms))

    async def staleness(self, op: str, *args: Any) -> tuple[dict[str, Any], int]:
        """The staleness bound (staleness.lua): `op` is set (S, B, modes, policy, gen), clear or get;
        returns the bound's fields ({} = none) and the policy version."""
        fields, version = await self._call("staleness", op, *args)
        return codec.pairs(fields), int(version)

    async def delete_rollouts(self, rollout_ids: Sequence[str], spare_read_since: float | None = None) -> int:
        """How many of `rollout_ids` were terminal (and unmarked since `spare_read_since`) and are now gone."""
        spare = "" if spare_read_since is None else _f(spare_read_since)
        return int(await self._call("delete_rollouts", spare, *rollout_ids))
