"""The watchdog's schedule: a sweep on demand, and the lazy one before store calls (once per debounce window)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from .redis import RedisLightningStore

logger = logging.getLogger(__name__)

# The cross-process sweep lock's TTL is at most this long.
SWEEP_LOCK_MAX_SECONDS = 10.0


class Watchdog:
    """Runs sweep.lua for one store; reads the store's `scan_debounce_seconds` and `lease_seconds` each time."""

    def __init__(self, store: RedisLightningStore) -> None:
        self.store = store
        self.last_sweep = float("-inf")

    async def sweep(self, *, force: bool = True) -> tuple[int, int]:
        """Time out / mark unresponsive, reclaim lapsed leases: (verdicts, reclaimed), or (-1, 0) if locked."""
        store = self.store
        # The lock only spaces sweeps across processes; a reader with a long debounce (`lq status`)
        # must not silence everyone else's watchdog, so its TTL is capped.
        lock_ms = 0 if force else int(min(store.scan_debounce_seconds, SWEEP_LOCK_MAX_SECONDS) * 1000)
        lease_ms = int(store.lease_seconds * 1000) if store.lease_seconds else 0
        verdicts, reclaimed = await store.transitions.sweep(lock_ms=lock_ms, lease_ms=lease_ms, reaper="reaper")
        self.last_sweep = time.monotonic()
        if verdicts > 0 or reclaimed > 0:
            logger.info("watchdog: %d attempt verdicts, %d stream entries reclaimed", verdicts, reclaimed)
        return verdicts, reclaimed

    async def maybe_sweep(self) -> None:
        """The lazy scan of the contract: before the listed calls, at most once per debounce window."""
        debounce = self.store.scan_debounce_seconds
        if time.monotonic() - self.last_sweep >= debounce:
            self.last_sweep = time.monotonic()
            try:
                await self.store.sweep(force=debounce == 0)
            except ResponseError as exc:
                # Refused by the server (a live record of the wrong type, OOM): the call it precedes still
                # runs; the error is reported each debounce window until it is fixed.
                logger.error(
                    "watchdog sweep failed in namespace %r: %s; going on without it", self.store.namespace, exc
                )
