"""Helpers shared by the proxy and adapter suites: a stand-in upstream's model entry, clients of a proxy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from openai import AsyncOpenAI

from lightning_queue.llm_proxy import LLMProxy, UpstreamModel
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import AttemptedRollout

# The upstream's key: it must reach the upstream and nothing else (spans, responses, logs, resources).
UPSTREAM_KEY = "sk-upstream-9f3c2e7d-SECRET"
MODEL = "policy"

ProxyFactory = Callable[..., Awaitable[LLMProxy]]


def upstream_of(server: StandInModelServer, name: str = MODEL, **kwargs: Any) -> UpstreamModel:
    kwargs.setdefault("api_key", UPSTREAM_KEY)
    kwargs.setdefault("extra_body", {"return_token_ids": True})
    return UpstreamModel(name=name, base_url=server.url, model=server.model, **kwargs)


def client_of(proxy: LLMProxy, attempt: AttemptedRollout | None = None, **kwargs: Any) -> AsyncOpenAI:
    """The official client pointed at the attempt's resource URL, exactly as an agent would use it."""
    if attempt is None:
        resource = proxy.as_resource()
    else:
        resource = proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id)
    kwargs.setdefault("api_key", resource.api_key or "no-key")
    return AsyncOpenAI(base_url=resource.endpoint, max_retries=0, timeout=20.0, **kwargs)


async def until_admitted(proxy: LLMProxy, count: int = 1, within: float = 10.0) -> None:
    """Wait until `count` calls are in flight through `proxy` (admitted by its weight-sync barrier)."""
    for _ in range(int(within / 0.005)):
        if proxy.in_flight() >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{proxy!r} never had {count} call(s) in flight")
