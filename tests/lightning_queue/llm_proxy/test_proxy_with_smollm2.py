"""Against the real SmolLM2 server: the proxy records exactly the token ids the model saw and produced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.adapter import LlmProxyTraceToTriplet, emit_reward
from lightning_queue.llm_proxy import UpstreamModel
from lightning_queue.types import Span
from tests.support.proxy import ProxyFactory, client_of

pytest.importorskip("torch", reason="needs the local-llm extra")
model_server = pytest.importorskip("lightning_queue.model_server")

pytestmark = [pytest.mark.model, pytest.mark.slow]

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 8}


@pytest.fixture(scope="module")
def smollm2_url() -> Iterator[str]:
    # One torch thread: steady speed on a shared 2-core machine.
    with model_server.ServerThread(model_server.ModelServer(model_server.load_default_model(), threads=1)) as url:
        yield url


@pytest.fixture
async def smol_client(
    make_proxy: ProxyFactory, store: RedisLightningStore, smollm2_url: str
) -> tuple[AsyncOpenAI, str, str]:
    proxy = await make_proxy(model_list=[UpstreamModel(name="smol", base_url=smollm2_url, model="default")])
    attempt = await store.start_rollout(input=None)
    return client_of(proxy, attempt), attempt.rollout_id, attempt.attempt.attempt_id


async def direct(url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/chat/completions", json=body) as response:
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


async def test_recorded_token_ids_are_the_servers_streamed_or_not_and_become_triplets(
    smol_client: tuple[AsyncOpenAI, str, str], store: RedisLightningStore, smollm2_url: str
) -> None:
    client, rollout_id, attempt_id = smol_client
    expected = await direct(smollm2_url, {"model": "default", "messages": QUESTION, **GREEDY})

    async with client:
        plain = await client.chat.completions.create(model="smol", messages=QUESTION, **GREEDY)  # type: ignore[arg-type]
        reward = emit_reward(1.0)
        seq = await store.get_next_span_sequence_id(rollout_id, attempt_id)
        await store.add_span(
            Span.from_core_fields(reward, rollout_id=rollout_id, attempt_id=attempt_id, sequence_id=seq)
        )
        stream = await client.chat.completions.create(model="smol", messages=QUESTION, stream=True, **GREEDY)  # type: ignore[arg-type]
        streamed_text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    plain_span, _, stream_span = list(await store.query_spans(rollout_id, attempt_id))
    assert plain.choices[0].message.content == expected["choices"][0]["message"]["content"] == streamed_text
    for span in (plain_span, stream_span):
        assert span.attributes["prompt_token_ids"] == expected["prompt_token_ids"]
        assert span.attributes["response_token_ids"] == expected["choices"][0]["token_ids"]
    assert stream_span.attributes["llm.is_streaming"] is True

    triplets = LlmProxyTraceToTriplet().adapt(list(await store.query_spans(rollout_id)))
    assert [t.reward for t in triplets] == [1.0, None]
    assert all(t.prompt["token_ids"] == expected["prompt_token_ids"] for t in triplets)
    assert all(t.response["token_ids"] == expected["choices"][0]["token_ids"] for t in triplets)
