"""Policy versions from the resources update to the triplet: claim, proxy span, adapters, and the flags
that say when a call may have been answered by two weight versions."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.adapter import LlmProxyTraceToTriplet, TracerTraceToTriplet
from lightning_queue.llm_proxy import LLMProxy
from lightning_queue.testing import Reply, StandInModelServer
from lightning_queue.types import AttemptedRollout, Span
from tests.support.proxy import MODEL, ProxyFactory, client_of, until_admitted

FAST = {"pause_poll": 0.02, "pause_retry_after": 0.1}
HELLO = [{"role": "user", "content": "hello"}]


async def claimed(store: RedisLightningStore) -> AttemptedRollout:
    await store.enqueue_rollout(input={"task": "versions"})
    attempt = await store.dequeue_rollout(worker_id="w-1")
    assert attempt is not None
    return attempt


async def only_span(store: RedisLightningStore, attempt: AttemptedRollout) -> Span:
    [span] = await store.query_spans(attempt.rollout_id)
    return span


async def until_version(proxy: LLMProxy, store: RedisLightningStore) -> None:
    """Wait until the proxy serves with the store's current version (it reads both every interval)."""
    target = await store.policy_version()
    for _ in range(500):
        async with aiohttp.ClientSession() as session, session.get(f"{proxy.endpoint}/health") as response:
            paused = (await response.json())["claims_paused"]
        if proxy.policy_version() == target and not paused:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the proxy never saw policy version {target}")


async def test_version_goes_from_update_resources_through_the_claim_and_the_span_to_the_triplets(
    make_proxy: ProxyFactory, store: RedisLightningStore
) -> None:
    await store.update_resources("rs-a", {})
    update = await store.update_resources("rs-a", {})
    version = update.policy_version
    assert version is not None and version == await store.policy_version()
    attempt = await claimed(store)
    assert attempt.attempt.policy_version == version
    proxy = await make_proxy(**FAST)

    async with client_of(proxy, attempt) as client:
        await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]

    span = await only_span(store, attempt)
    assert span.attributes["lq.policy.version"] == version
    assert span.attributes["lq.attempt.policy_version"] == version
    assert span.attributes["lq.policy.version_changed"] is False
    [proxy_triplet] = LlmProxyTraceToTriplet().adapt([span])
    [tracer_triplet] = TracerTraceToTriplet().adapt([span])
    for triplet in (proxy_triplet, tracer_triplet):
        assert triplet.metadata["policy_version"] == version
        assert triplet.metadata["attempt_policy_version"] == version
        assert triplet.metadata["policy_version_changed"] is False


async def test_a_call_after_a_sync_carries_the_new_version_and_its_attempt_keeps_the_old_one(
    make_proxy: ProxyFactory, store: RedisLightningStore
) -> None:
    first = (await store.update_resources("rs-a", {})).policy_version
    attempt = await claimed(store)
    proxy = await make_proxy(**FAST)
    async with store.claims_pause(30.0):
        await proxy.drain(5.0)
        second = (await store.update_resources("rs-b", {})).policy_version
    await until_version(proxy, store)

    async with client_of(proxy, attempt) as client:
        await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    span = await only_span(store, attempt)
    assert (span.attributes["lq.policy.version"], span.attributes["lq.attempt.policy_version"]) == (second, first)
    assert span.attributes["lq.policy.version_changed"] is False
    [triplet] = LlmProxyTraceToTriplet().adapt([span])
    assert (triplet.metadata["policy_version"], triplet.metadata["attempt_policy_version"]) == (second, first)


async def test_a_version_bump_during_a_call_without_a_barrier_is_flagged_with_both_versions(
    make_proxy: ProxyFactory, store: RedisLightningStore, stand_in: StandInModelServer
) -> None:
    before = (await store.update_resources("rs-a", {})).policy_version
    attempt = await claimed(store)
    proxy = await make_proxy(**FAST)
    await until_version(proxy, store)
    stand_in.script(Reply(content="slow", delay=0.5))
    async with client_of(proxy, attempt) as client:
        call = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HELLO))  # type: ignore[arg-type]
        await until_admitted(proxy)
        after = (await store.update_resources("rs-b", {})).policy_version  # no pause, no drain
        await call
    span = await only_span(store, attempt)
    assert span.attributes["lq.policy.version"] == before
    assert span.attributes["lq.policy.version_at_end"] == after
    assert span.attributes["lq.policy.version_changed"] is True
    [triplet] = LlmProxyTraceToTriplet().adapt([span])
    assert triplet.metadata["policy_version_changed"] is True
    assert triplet.metadata["policy_version_at_end"] == after


@pytest.mark.parametrize("stream", [False, True])
async def test_the_upstreams_weights_version_is_recorded_from_its_fingerprint(
    make_proxy: ProxyFactory, store: RedisLightningStore, stand_in: StandInModelServer, stream: bool
) -> None:
    stand_in.system_fingerprint = "weights-v3"
    attempt = await claimed(store)
    proxy = await make_proxy(**FAST)
    async with client_of(proxy, attempt) as client:
        if stream:
            chunks = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)  # type: ignore[arg-type]
            _ = [chunk async for chunk in chunks]
        else:
            await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    span = await only_span(store, attempt)
    assert span.attributes["lq.upstream.weights_version"] == 3
    assert "lq.upstream.weights_versions" not in span.attributes
    assert span.attributes["lq.policy.version_changed"] is False
    [triplet] = LlmProxyTraceToTriplet().adapt([span])
    assert triplet.metadata["upstream_weights_version"] == 3


async def test_an_upstream_that_swaps_weights_mid_stream_is_flagged(
    make_proxy: ProxyFactory, store: RedisLightningStore, stand_in: StandInModelServer
) -> None:
    stand_in.system_fingerprint = "weights-v0"
    stand_in.script(Reply(content="one two three four", chunk_delay=0.05))
    attempt = await claimed(store)
    proxy = await make_proxy(**FAST)
    async with client_of(proxy, attempt) as client:
        chunks = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)  # type: ignore[arg-type]
        seen = []
        async for chunk in chunks:
            seen.append(chunk.system_fingerprint)
            if len(seen) == 2:
                stand_in.system_fingerprint = "weights-v1"  # a server that swaps under a running request
    assert {"weights-v0", "weights-v1"} <= set(seen)
    span = await only_span(store, attempt)
    assert span.attributes["lq.upstream.weights_versions"] == [0, 1]
    assert span.attributes["lq.upstream.weights_version"] == 0
    assert span.attributes["lq.policy.version_changed"] is True
    [triplet] = TracerTraceToTriplet().adapt([span])
    assert triplet.metadata["upstream_weights_versions"] == [0, 1]
    assert triplet.metadata["policy_version_changed"] is True


async def test_unattributed_and_foreign_spans_give_triplets_without_versions() -> None:
    span = Span.from_attributes(
        attributes={"prompt_token_ids": [1, 2], "response_token_ids": [3], "gen_ai.response.id": "r1"},
        rollout_id="ro-1",
        attempt_id="at-1",
        sequence_id=1,
        name="openai.chat.completion",
    )
    [triplet] = LlmProxyTraceToTriplet().adapt([span])
    assert triplet.metadata == {"response_id": "r1"}
