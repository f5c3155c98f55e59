"""Retention: a namespace's policy for deleting old finished rollouts, applied in bounded steps.

The contract keeps everything, and so does a namespace without a policy. A policy (a hash at
`retention`, so every process reads the same one) deletes terminal rollouts, oldest end_time first
from `idx:ended`, that ended more than `max_age` seconds ago, or are beyond the `keep_newest` newest,
or while Redis `used_memory` is above `memory_budget` bytes, through `delete_rollouts` (which never
deletes a rollout that is not terminal or has a live attempt). Unread rollouts are spared: one that
ended less than `min_age` seconds ago, and one a `wait_for_rollouts` call holds or returned less than
`min_age` ago (its read mark, store/reads.py). Steps run from `lq retention run` and, every
`auto_every` seconds, from the workers (auto_retention.py).
"""

from __future__ import annotations

import logging
import math
import time

from pydantic import BaseModel, ConfigDict, model_validator

from ..options import setting
from .memory import MemoryInfo, read_memory_info
from .redis import RedisLightningStore

logger = logging.getLogger(__name__)

DEFAULT_MIN_AGE = 600.0
DEFAULT_AUTO_EVERY = 1.0
MIN_AUTO_EVERY = 0.1
# Ids looked at per step: one ZRANGE and one or two delete_rollouts script calls, then other clients run.
STEP = 200
# A step trims the done stream's entries older than this, at most DONE_TRIM_LIMIT of them.
DONE_KEPT_SECONDS = 10.0
DONE_TRIM_LIMIT = 10 * STEP
# `lq status` warns past either mark when no policy is set.
WARN_FINISHED = 10_000
WARN_MEMORY_SHARE = 0.5
_warned_unmeasured = False


class RetentionPolicy(BaseModel):
    """What to delete; at least one of `max_age` / `keep_newest` / `memory_budget`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_age: float | None = setting(None, gt=0, help="Delete finished rollouts that ended more than this many s ago.")
    keep_newest: int | None = setting(None, ge=0, help="Delete all but the newest N finished rollouts.")
    memory_budget: int | None = setting(
        None,
        gt=0,
        option="--memory-budget-mb",
        scale=1 << 20,
        help="Delete finished rollouts, oldest first, while the Redis server's used_memory is above this (MiB).",
    )
    min_age: float = setting(
        DEFAULT_MIN_AGE, ge=0, help="Never delete a rollout that ended, or that a wait held, less than this many s ago."
    )
    auto_every: float = setting(
        DEFAULT_AUTO_EVERY,
        ge=0,
        help="Workers apply it this often (s; up to 5 steps of 200 rollouts), one process at a time; "
        "0: only `lq retention run`.",
    )
    archive: str | None = setting(
        None, min_length=1, help="`lq export` into this directory before deleting (`lq retention run` only)."
    )

    @model_validator(mode="after")
    def _some_rule(self) -> RetentionPolicy:
        if self.max_age is None and self.keep_newest is None and self.memory_budget is None:
            raise ValueError("a retention policy needs --max-age, --keep-newest or --memory-budget-mb (or several)")
        if 0 < self.auto_every < MIN_AUTO_EVERY:
            # Each tick costs every worker a wake-up and a lock attempt.
            raise ValueError(f"auto_every must be 0 (off) or at least {MIN_AUTO_EVERY} s, got {self.auto_every!r}")
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
        "set a policy with `lq retention set --max-age S`, `--keep-newest N` or `--memory-budget-mb M` "
        "(export first: `lq export`, or add `--archive DIR`)"
    ]


async def _memory_excess(store: RedisLightningStore, budget: int) -> tuple[int, int] | None:
    """(used_memory, bytes over `budget`) of the Redis server; None when it will not say (logged once)."""
    memory = await read_memory_info(store._redis)
    if memory.used_bytes is None:
        global _warned_unmeasured
        if not _warned_unmeasured:
            _warned_unmeasured = True
            logger.warning(
                "retention of %r: Redis does not report used_memory, so its memory_budget rule cannot apply",
                store.namespace,
            )
        return None
    return memory.used_bytes, max(0, memory.used_bytes - budget)


async def apply_step(
    store: RedisLightningStore,
    *,
    now: float | None = None,
    step: int = STEP,
    offset: int = 0,
    archived_before: float | None = None,
    policy: RetentionPolicy | None = None,
) -> tuple[int, int]:
    """Judge up to `step` rollouts from rank `offset` of `idx:ended` (oldest first) and delete the condemned.

    Returns (deleted, condemned); condemned ones not deleted are those `delete_rollouts` spared (a live
    attempt, a recent read mark): they stay in the index, so the next step starts `condemned - deleted`
    further on. `policy` saves reading the stored one again.
    A policy with an `archive` deletes only rollouts that ended before `archived_before` (the export's
    checkpoint; `lightning_queue.export.archive` runs the export first) and refuses to run without it.
    """
    policy = policy or await read_policy(store)
    if policy is None:
        return 0, 0
    if policy.archive is not None and archived_before is None:
        raise ValueError(
            f"the retention policy of {store.namespace!r} archives to {policy.archive!r}: "
            "apply it with `lq retention run` (which exports first), not without the archive"
        )
    now = time.time() if now is None else now
    unread = now - policy.min_age
    async with store._redis.pipeline(transaction=False) as pipe:
        pipe.zcard(store.keys.ended_rollouts)
        pipe.zrange(store.keys.ended_rollouts, offset, offset + step - 1, withscores=True)
        # Marks older than min_age protect nothing any more.
        pipe.zremrangebyscore(store.keys.reads, "-inf", f"({unread}")
        # Wake-ups older than DONE_KEPT_SECONDS wake nobody in time (a waiter reads statuses every second);
        # without this the done stream would grow to its MAXLEN cap while the rollouts it names are gone.
        done_before = int((time.time() - DONE_KEPT_SECONDS) * 1000)
        pipe.xtrim(store.keys.done, minid=f"{done_before}-0", approximate=True, limit=DONE_TRIM_LIMIT)
        total, window, _, _ = await pipe.execute()
    excess = 0 if policy.keep_newest is None else max(0, int(total) - policy.keep_newest)
    too_old = float("-inf") if policy.max_age is None else now - policy.max_age
    over_budget = 0
    if policy.memory_budget is not None and total and (measured := await _memory_excess(store, policy.memory_budget)):
        used, over = measured
        # used / total overstates a rollout's size (it counts the whole server): the step undershoots
        # and the next one measures again, rather than deleting past the budget.
        over_budget = min(step, math.ceil(over / max(1.0, used / int(total))))
    if archived_before is not None:
        unread = min(unread, archived_before)
    # Every rule condemns a prefix of the end-time order, so the first survivor ends the walk.
    condemned = []
    for k, (member, end_time) in enumerate(window):
        ruled = offset + k < excess or float(end_time) < too_old or k < over_budget
        if not (ruled and float(end_time) < unread):
            break
        condemned.append(member.decode())
    spare = now - policy.min_age
    deleted = await store.delete_rollouts(condemned, spare_read_since=spare) if condemned else 0
    return deleted, len(condemned)


async def apply(
    store: RedisLightningStore,
    *,
    now: float | None = None,
    step: int = STEP,
    archived_before: float | None = None,
) -> int:
    """Steps until the policy condemns nothing more; returns the total deleted."""
    policy = await read_policy(store)
    deleted = offset = 0
    while True:
        done, condemned = await apply_step(
            store, now=now, step=step, offset=offset, archived_before=archived_before, policy=policy
        )
        if condemned == 0:
            return deleted
        deleted += done
        offset += condemned - done
