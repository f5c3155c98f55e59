"""The resources snapshots a worker's rollouts run with, kept by version: only a snapshot it lacks is read.

A claim names, per rollout, the snapshot it runs with as of the claim (its pinned one or the latest, with
version and update time: `store.leases.ResourcesRef`). Rollouts naming one the worker holds start with no
read at all; those naming one it lacks share one read. Snapshots are immutable per (id, version,
update_time), so a kept one never goes stale; the few newest are kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from lightning_queue.store import RedisLightningStore
from lightning_queue.store.leases import Claim
from lightning_queue.types import ResourcesUpdate

# Snapshots kept: a run uses one or a few at a time (the latest, and pins of rollouts still queued).
KEEP = 8

Key = tuple[str, int, float]


def _key_of(update: ResourcesUpdate) -> Key:
    return (update.resources_id, update.version, update.update_time)


class ResourcesCache:
    """Resources reads of one worker (one event loop)."""

    def __init__(self, store: RedisLightningStore, *, keep: int = KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep!r}")
        self.store = store
        self.keep = keep
        self._kept: OrderedDict[Key, ResourcesUpdate] = OrderedDict()
        self._reading: dict[Key, asyncio.Future[ResourcesUpdate | None]] = {}
        self.reads = 0  # snapshots read from Redis, for tests and telemetry

    def for_claim(self, claim: Claim) -> asyncio.Future[ResourcesUpdate | None]:
        """The snapshot `claim`'s rollout runs with (None: there is none, or its pinned one does not exist)."""
        ref = claim.resources
        if ref is None:  # a claim that did not say (an older store): read what the rollout names now
            return self._read(None, claim.rollout.resources_id)
        if ref.resources_id == "" or ref.version == "":
            return _done(None)
        key = (ref.resources_id, int(ref.version), float(ref.update_time))
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return _done(kept)
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = self._read(key, ref.resources_id)
        return reading

    def _read(self, key: Key | None, resources_id: str | None) -> asyncio.Future[ResourcesUpdate | None]:
        self.reads += 1
        if resources_id is not None:
            read = self.store.get_resources_by_id(resources_id)
        else:
            read = self.store.get_latest_resources()
        task = asyncio.ensure_future(read)
        task.add_done_callback(lambda t: self._done_reading(key, t))
        return task

    def _done_reading(self, key: Key | None, task: asyncio.Future[ResourcesUpdate | None]) -> None:
        if key is not None:
            self._reading.pop(key, None)
        # Retrieved here too: a read whose rollouts all stopped waiting must not warn "never retrieved".
        if task.cancelled() or task.exception() is not None:
            return
        update = task.result()
        if update is not None:
            # Kept under its own version: it may be newer than the claim's if it changed in between.
            self._kept[_key_of(update)] = update
            self._kept.move_to_end(_key_of(update))
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)


def _done(value: ResourcesUpdate | None) -> asyncio.Future[ResourcesUpdate | None]:
    future: asyncio.Future[ResourcesUpdate | None] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
