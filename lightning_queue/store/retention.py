"""Retention: a namespace's policy for deleting old finished rollouts, applied in bounded steps.

The contract keeps everything, and so does a namespace without a policy. A policy (a hash at
`retention`) deletes terminal rollouts, oldest end_time first from `idx:ended`, that are older than
`max_age` seconds or beyond the `keep_newest` newest, through `delete_rollouts` (which never deletes a
rollout that is not terminal or has a live attempt). "Read" is defined by time: a rollout that ended
less than `min_age` seconds ago is never deleted, so an algorithm's `wait_for_rollouts`/`query_rollouts`
has `min_age` to see it (keep `min_age` above the longest wait of the namespace's algorithms).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .memory import MemoryInfo
from .redis import RedisLightningStore

DEFAULT_MIN_AGE = 600.0
# Ids looked at per step: one ZRANGE and one or two delete_rollouts script calls, then other clients run.
STEP = 200
# `lq status` warns past either mark when no policy is set.
WARN_FINISHED = 10_000
WARN_MEMORY_SHARE = 0.5


class RetentionPolicy(BaseModel):
    """What to delete; at least one of `max_age` / `keep_newest`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_age: float | None = Field(None, gt=0, description="Delete rollouts that ended more than this many s ago.")
    keep_newest: int | None = Field(None, ge=0, description="Delete all but the newest N finished rollouts.")
    min_age: float = Field(DEFAULT_MIN_AGE, ge=0, description="Never delete a rollout that ended less than this ago.")
    archive: str | None = Field(None, min_length=1, description="`lq export` into this directory before deleting.")

    @model_validator(mode="after")
    def _some_rule(self) -> RetentionPolicy:
        if self.max_age is None and self.keep_newest is None:
            raise ValueError("a retention policy needs --max-age or --keep-newest (or both)")
        return self


async def read_policy(store: RedisLightningStore) -> RetentionPolicy | None:
    raw = await store._redis.hgetall(store.keys.retention)
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return RetentionPolicy.model_validate(fields)


async def write_policy(store: RedisLightningStore, policy: RetentionPolicy | None) -> None:
    """Store `policy` (None: remove it, back to keeping everything)."""
    key = store.keys.retention
    async with store._redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if policy is not None:
            pipe.hset(key, mapping={k: str(v) for k, v in policy.model_dump(exclude_none=True).items()})
        await pipe.execute()


def retention_warnings(policy: RetentionPolicy | None, memory: MemoryInfo, finished: int) -> list[str]:
    """What `lq status` warns about: a namespace that grows without a policy."""
    if policy is not None:
        return []
    grown = finished >= WARN_FINISHED or (
        memory.used_bytes is not None and memory.max_bytes and memory.used_bytes >= WARN_MEMORY_SHARE * memory.max_bytes
    )
    if not grown:
        return []
    return [
        f"{finished} finished rollouts are kept forever (memory: {memory.describe()}): "
        "set a policy with `lq retention set --max-age S` or `--keep-newest N` (export first: `lq export`)"
    ]


async def apply_step(
    store: RedisLightningStore,
    *,
    now: float | None = None,
    step: int = STEP,
    offset: int = 0,
    archived_before: float | None = None,
) -> tuple[int, int]:
    """Judge up to `step` rollouts from rank `offset` of `idx:ended` (oldest first) and delete the condemned.

    Returns (deleted, condemned); condemned ones not deleted are those `delete_rollouts` refused (a live
    attempt): they stay in the index, so the next step starts `condemned - deleted` further on.
    A policy with an `archive` deletes only rollouts that ended before `archived_before` (the export's
    checkpoint; `lightning_queue.export.archive` runs the export first) and refuses to run without it.
    """
    policy = await read_policy(store)
    if policy is None:
        return 0, 0
    if policy.archive is not None and archived_before is None:
        raise ValueError(
            f"the retention policy of {store.namespace!r} archives to {policy.archive!r}: "
            "apply it with `lq retention run` (which exports first), not without the archive"
        )
    now = time.time() if now is None else now
    async with store._redis.pipeline(transaction=False) as pipe:
        pipe.zcard(store.keys.ended_rollouts)
        pipe.zrange(store.keys.ended_rollouts, offset, offset + step - 1, withscores=True)
        total, window = await pipe.execute()
    excess = 0 if policy.keep_newest is None else max(0, int(total) - policy.keep_newest)
    too_old = float("-inf") if policy.max_age is None else now - policy.max_age
    unread = now - policy.min_age
    if archived_before is not None:
        unread = min(unread, archived_before)
    # Both rules condemn a prefix of the end-time order, so the first survivor ends the walk.
    condemned = []
    for rank, (member, end_time) in enumerate(window, start=offset):
        if not ((rank < excess or float(end_time) < too_old) and float(end_time) < unread):
            break
        condemned.append(member.decode())
    deleted = await store.delete_rollouts(condemned) if condemned else 0
    return deleted, len(condemned)


async def apply(
    store: RedisLightningStore,
    *,
    now: float | None = None,
    step: int = STEP,
    archived_before: float | None = None,
) -> int:
    """Steps until the policy condemns nothing more; returns the total deleted."""
    deleted = offset = 0
    while True:
        done, condemned = await apply_step(store, now=now, step=step, offset=offset, archived_before=archived_before)
        if condemned == 0:
            return deleted
        deleted += done
        offset += condemned - done
