"""Fixtures of the proxy suite: a stand-in upstream, a proxy over the `store` fixture, an attempt, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import UPSTREAM_KEY, ProxyFactory, client_of, upstream_of


@pytest.fixture
async def stand_in() -> AsyncIterator[StandInModelServer]:
    async with StandInModelServer(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture
async def make_proxy(store: RedisLightningStore, stand_in: StandInModelServer) -> AsyncIterator[ProxyFactory]:
    """Start proxies in the test's loop (unless told otherwise); all are stopped at the end."""
    started: list[LLMProxy] = []

    async def factory(**kwargs: Any) -> LLMProxy:
        kwargs.setdefault("model_list", [upstream_of(stand_in)])
        kwargs.setdefault("store", store)
        kwargs.setdefault("launch_mode", "asyncio")
        proxy = LLMProxy(**kwargs)
        await proxy.start()
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        if proxy.is_running():
            await proxy.stop()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> LLMProxy:
    return await make_proxy()


@pytest.fixture
async def attempt(store: RedisLightningStore) -> AttemptedRollout:
    return await store.start_rollout(input={"task": "say hello"})


@pytest.fixture
async def client(proxy: LLMProxy, attempt: AttemptedRollout) -> AsyncIterator[AsyncOpenAI]:
    async with client_of(proxy, attempt) as opened:
        yield opened
