"""Automatic retention: the workers' periodic share of applying a namespace's policy.

Every worker process's lease thread calls `tick()` after its watchdog sweep. A tick reads the policy
(at most once per `auto_every`, or per POLICY_CHECK_SECONDS without one) and, if it wins the
cross-process lock `lock:retention` (SET NX with a TTL of `auto_every`), applies one bounded step.
So however many workers run, the namespace sees at most one step per `auto_every`, each a ZRANGE
and a delete script over at most STEP ids. An archiving policy is skipped (logged once per process):
its export writes files, which belong on one machine, so `lq retention run --every S` applies it there.
"""

from __future__ import annotations

import logging
import time
import uuid

from pydantic import ValidationError

from .redis import RedisLightningStore
from .retention import STEP, apply_step, read_policy

logger = logging.getLogger(__name__)

# Without a policy (or with auto_every 0) a worker looks again this often, so one set later takes effect.
POLICY_CHECK_SECONDS = 10.0


class AutoRetention:
    """One process's ticks for one store; `tick()` returns how many rollouts its step deleted, or None."""

    def __init__(self, store: RedisLightningStore, *, step: int = STEP) -> None:
        self.store = store
        self.step = step
        self._token = uuid.uuid4().hex
        self._next = float("-inf")
        self._told: str | None = None

    def _tell_once(self, message: str) -> None:
        if message != self._told:
            self._told = message
            logger.warning(message)

    async def tick(self) -> int | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + POLICY_CHECK_SECONDS
        store = self.store
        try:
            policy = await read_policy(store)
        except ValidationError as exc:
            self._tell_once(f"retention of {store.namespace!r}: the stored policy is invalid ({exc}); not applied")
            return None
        if policy is None or policy.auto_every == 0:
            return None
        self._next = now + policy.auto_every
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
        deleted, _ = await apply_step(store, policy=policy, step=self.step)
        if deleted:
            logger.info("retention of %r: deleted %d finished rollout(s)", store.namespace, deleted)
        return deleted
