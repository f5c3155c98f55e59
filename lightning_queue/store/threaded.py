"""`LightningStoreThreaded`: v0.3's thread-safety wrapper, which every store here already is.

Agent-Lightning wraps a store in a lock so that runner threads can share it. A lightning-queue store
keeps one Redis client per event loop and all state in (the in-process or a real) Redis server, whose
scripts make each transition atomic, so any number of threads and loops may share it unwrapped.
Wrapping therefore hands back the store itself: there is no lock to add and nothing to delegate.
"""

from __future__ import annotations

from .base import LightningStore


def LightningStoreThreaded(store: LightningStore) -> LightningStore:  # v0.3's class name
    """Return `store` unchanged (it is already safe across threads and event loops; see the module)."""
    if not isinstance(store, LightningStore):
        raise TypeError(f"LightningStoreThreaded wraps a LightningStore, got {type(store).__name__}: {store!r:.80}")
    return store
