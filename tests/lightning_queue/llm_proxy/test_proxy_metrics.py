"""The proxy's `/metrics`: calls by model and status, latency, tokens and spans match what clients did."""

from __future__ import annotations

import urllib.error

import pytest
from openai import AsyncOpenAI, NotFoundError

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy
from lightning_queue.types import AttemptedRollout
from tests.support.metrics import names, scrape, value
from tests.support.proxy import MODEL, ProxyFactory, client_of


async def test_calls_latency_tokens_and_spans_match_the_calls_made(
    proxy: LLMProxy, client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    prompt_tokens = completion_tokens = 0
    for i in range(3):
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"hi {i}"}])
        assert answer.usage is not None
        prompt_tokens += answer.usage.prompt_tokens
        completion_tokens += answer.usage.completion_tokens
    for _ in range(2):
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                prompt_tokens += chunk.usage.prompt_tokens
                completion_tokens += chunk.usage.completion_tokens

    samples = await scrape(f"{proxy.endpoint}/metrics")

    assert value(samples, "lq_proxy_calls_total", model=MODEL, status="200") == 5
    assert value(samples, "lq_proxy_calls_in_flight") == 0
    assert value(samples, "lq_proxy_upstream_latency_seconds_count", model=MODEL) == 5
    assert value(samples, "lq_proxy_time_to_first_token_seconds_count", model=MODEL) == 2
    assert value(samples, "lq_proxy_prompt_tokens_total", model=MODEL) == prompt_tokens > 0
    assert value(samples, "lq_proxy_completion_tokens_total", model=MODEL) == completion_tokens > 0
    assert value(samples, "lq_proxy_spans_recorded_total") == 5 == len(await store.query_spans(attempt.rollout_id))
    assert value(samples, "lq_proxy_spans_dropped_total") == 0
    assert value(samples, "lq_proxy_open_connections") >= 1  # this scrape's own


async def test_made_up_model_names_do_not_create_series(proxy: LLMProxy, client: AsyncOpenAI) -> None:
    for i in range(20):
        with pytest.raises(NotFoundError):
            await client.chat.completions.create(model=f"bogus-{i}", messages=[{"role": "user", "content": "x"}])

    samples = await scrape(f"{proxy.endpoint}/metrics")

    assert value(samples, "lq_proxy_calls_total", model="other", status="404") == 20
    models = {dict(labels).get("model") for _, labels in samples} - {None}
    assert models == {"other"}, models


async def test_two_proxies_in_one_process_count_apart(make_proxy: ProxyFactory, attempt: AttemptedRollout) -> None:
    first, second = await make_proxy(), await make_proxy()
    async with client_of(first, attempt) as client:
        for _ in range(2):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])

    assert value(await scrape(f"{first.endpoint}/metrics"), "lq_proxy_calls_total", model=MODEL, status="200") == 2
    assert "lq_proxy_calls_total" not in names(await scrape(f"{second.endpoint}/metrics"))


async def test_metrics_need_the_proxy_token_when_it_has_one(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(auth_token="metrics-secret")
    url = f"{proxy.endpoint}/metrics"

    with pytest.raises(urllib.error.HTTPError) as refused:
        await scrape(url)

    assert refused.value.code == 401
    assert "lq_proxy_calls_in_flight" in names(await scrape(url, {"Authorization": "Bearer metrics-secret"}))
