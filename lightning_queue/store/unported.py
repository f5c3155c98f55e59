"""Agent-Lightning stores with no counterpart here: importable, and saying what to use when built.

v0.3 ships SQLite and MongoDB stores and an HTTP `LightningStoreServer` class. Here every store is Redis
(or the same code on an in-process server), and the HTTP server is the `lq store-server` command, which
lives above the store layer (`lightning_queue.store_server`), so this package cannot hand out its class.
"""

from __future__ import annotations

from typing import Any, NoReturn


class UnportedStoreError(NotImplementedError):
    """An Agent-Lightning store was built that lightning-queue does not implement under that name."""


def _refuse(name: str, instead: str) -> NoReturn:
    raise UnportedStoreError(
        f"Agent-Lightning's {name} is not available in lightning-queue; {instead} "
        "(see docs/porting-from-agent-lightning.md)"
    )


class SqliteLightningStore:
    """Agent-Lightning's SQLite store: use `RedisLightningStore` (durable) or `InMemoryLightningStore` here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(
            "SqliteLightningStore",
            "use RedisLightningStore for a store that outlives the process, "
            "or InMemoryLightningStore for one that needs no server",
        )


class MongoLightningStore:
    """Agent-Lightning's MongoDB store: use `RedisLightningStore` or `InMemoryLightningStore` here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(
            "MongoLightningStore",
            "use RedisLightningStore for a shared store, or InMemoryLightningStore for one that needs no server",
        )


class LightningStoreServer:
    """Agent-Lightning's in-process HTTP store server: run `lq store-server` here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(
            "LightningStoreServer",
            "serve a store over HTTP with `lq store-server` (lightning_queue.store_server.create_app "
            "builds the same app in-process); clients connect with LightningStoreClient",
        )
