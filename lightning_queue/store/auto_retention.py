"""Automatic retention: the workers' periodic share of applying a namespace's policy.

Every worker process's lease thread calls `tick()` when `next_tick` comes. A tick uses the policy
(read again every POLICY_CHECK_SECONDS) and, if it wins the cross-process lock `lock:retention`
(SET NX with a TTL of `auto_every`), applies up to MAX_STEPS bounded steps, the next only while the
last came back full. So however many workers run, the namespace sees one tick per `auto_every`, each
at most MAX_STEPS x (a ZRANGE and delete scripts over STEP ids), other clients running in between:
up to MAX_STEPS x STEP / auto_every deletions per second (1000/s with the defaults).
An archiving policy is skipped (logged once per process): its export writes files, which belong on
one machine, so `lq retention run --every S` applies it there.
"""

from __future__ import annotations

import logging
import time
import uuid

from pydantic import ValidationError

from .redis import RedisLightningStore
from .retention import STEP, RetentionPolicy, apply_step, read_policy

logger = logging.getLogger(__name__)

# A policy set, changed or cleared is seen by every worker within this long.
POLICY_CHECK_SECONDS = 10.0
# Full steps one tick may chain (each a few short script calls) before the next tick.
MAX_STEPS = 5


class AutoRetention:
    """One process's ticks for one store; `tick()` returns how many rollouts it deleted, or None."""

    def __init__(self, store: RedisLightningStore, *, step: int = STEP) -> None:
        self.store = store
        self.step = step
        self.next_tick = float("-inf")  # time.monotonic() of the next tick worth making
        self._token = uuid.uuid4().hex
        self._policy: RetentionPolicy | None = None
        self._policy_due = float("-inf")
        self._told: str | None = None

    def _tell_once(self, message: str) -> None:
        if message != self._told:
            self._told = message
            logger.warning(message)

    async def _current_policy(self, now: float) -> RetentionPolicy | None:
        if now >= self._policy_due:
            self._policy_due = now + POLICY_CHECK_SECONDS
            try:
                self._policy = await read_policy(self.store)
            except ValidationError as exc:
                self._policy = None
                self._tell_once(
                    f"retention of {self.store.namespace!r}: the stored policy is invalid ({exc}); not applied"
                )
        return self._policy

    async def tick(self) -> int | None:
        now = time.monotonic()
        if now < self.next_tick:
            return None
        store = self.store
        policy = await self._current_policy(now)
        if policy is None or policy.auto_every == 0:
            self.next_tick = self._policy_due
            return None
        self.next_tick = now + policy.auto_every
        if policy.archive is not None:
            self._tell_once(
                f"retention of {store.namespace!r} archives to {policy.archive!r}: workers do not export, "
                "so they skip it; run `lq retention run --every S` on the machine that holds the archive"
            )
            return None
        won = await store._redis.set(
            store.keys.retention_lock, self._token, nx=True, px=max(1, int(policy.auto_every * 1000))
        )
        if not won:
            return None
        deleted = offset = 0
        for _ in range(MAX_STEPS):
            done, condemned = await apply_step(store, policy=policy, step=self.step, offset=offset)
            deleted += done
            offset += condemned - done
            if condemned < self.step:
                break
        if deleted:
            logger.info("retention of %r: deleted %d finished rollout(s)", store.namespace, deleted)
        return deleted
