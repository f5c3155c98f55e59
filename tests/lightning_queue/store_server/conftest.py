"""Fixtures: an in-process `lq store-server` app on a loopback port, over the suite's store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from lightning_queue import LightningStoreClient
from lightning_queue.store_server import StoreServerSettings, create_app
from tests.lightning_queue.store.conftest import make_span
from tests.support.stores import StoreFactory

__all__ = ["make_span"]

ServerFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_server(make_store: StoreFactory) -> AsyncIterator[ServerFactory]:
    """Start servers (settings as keyword arguments) over one namespace; each gives its base URL."""
    runners: list[web.AppRunner] = []

    async def start(**settings: Any) -> str:
        app = create_app(make_store(), StoreServerSettings(**settings))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def server_url(start_server: ServerFactory) -> str:
    return await start_server()


@pytest.fixture
async def client(server_url: str) -> AsyncIterator[LightningStoreClient]:
    store = LightningStoreClient(server_url, connect_retries=())
    yield store
    await store.aclose()


# Behaviours of the Redis store that an HTTP client cannot have, each with the reason.
NOT_OVER_HTTP = {
    "test_input_round_trips[fakeredis-bytes]": "JSON has no bytes type",
    "test_input_round_trips[redis-bytes]": "JSON has no bytes type",
    "test_add_span_returns_the_very_object_passed_in[fakeredis]": "a reply over HTTP is a new object",
    "test_add_span_returns_the_very_object_passed_in[redis]": "a reply over HTTP is a new object",
    "test_started_rollout_never_enters_the_queue[fakeredis]": "queue_depth is the Redis store's own method",
    "test_started_rollout_never_enters_the_queue[redis]": "queue_depth is the Redis store's own method",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("::")[0].endswith("test_client_suite.py"):
            reason = NOT_OVER_HTTP.get(item.name)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"not over HTTP: {reason}"))
