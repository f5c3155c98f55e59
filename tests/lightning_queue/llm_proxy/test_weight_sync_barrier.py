"""The proxy's side of the weight-sync barrier: 503 + Retry-After while claims are paused, drains, crashes."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import DrainTimeout, LLMProxy, proxy_statuses
from lightning_queue.store.errors import NotSupported
from lightning_queue.testing import Reply, StandInModelServer
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import MODEL, ProxyFactory, client_of, until_admitted

FAST = {"pause_poll": 0.02, "pause_retry_after": 0.1}
HELLO = [{"role": "user", "content": "hello"}]


def call_url(proxy: LLMProxy, attempt: AttemptedRollout) -> str:
    return f"{proxy.endpoint}/rollout/{attempt.rollout_id}/attempt/{attempt.attempt.attempt_id}/v1/chat/completions"


async def health(proxy: LLMProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.endpoint}/health") as response:
        result: dict[str, Any] = await response.json()
        return result


async def until_health(proxy: LLMProxy, key: str, value: int, within: float = 5.0) -> float:
    """Seconds until /health shows `key == value` (the proxy saw the change by itself, without a drain)."""
    started = time.monotonic()
    while (await health(proxy)).get(key) != value:
        assert time.monotonic() - started < within, f"/health never showed {key}={value}: {await health(proxy)}"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def default_retries_client(proxy: LLMProxy, attempt: AttemptedRollout) -> AsyncOpenAI:
    """An agent's client as most agents make it: OpenAI's default max_retries (2)."""
    resource = proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id)
    return AsyncOpenAI(base_url=resource.endpoint, api_key="no-key", timeout=20.0)


async def test_new_call_during_a_pause_gets_503_with_retry_after_in_the_openai_error_shape(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(pause_poll=0.02, pause_retry_after=2.5)
    await store.pause_claims(30.0)
    seen = await until_health(proxy, "claims_paused", 1)
    assert seen < 1.0  # learnt from its own reads, within a few intervals

    async with aiohttp.ClientSession() as session:
        async with session.post(call_url(proxy, attempt), json={"model": MODEL, "messages": HELLO}) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "3"  # whole seconds, rounded up
            assert response.headers["retry-after-ms"] == "2500"
            error = (await response.json())["error"]
    assert error["type"] == "weight_sync_in_progress" and error["code"] == 503
    assert "weight sync" in error["message"] and "2.5 s" in error["message"]
    counts = await health(proxy)
    assert counts["refused_paused"] == 1 and counts["in_flight"] == 0


async def test_a_proxy_started_during_a_pause_refuses_its_first_call(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    await store.pause_claims(30.0)
    proxy = await make_proxy(pause_poll=5.0)  # no background read would come in time: the start reads it
    async with client_of(proxy, attempt) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert raised.value.status_code == 503


async def test_openai_client_with_its_default_retries_gets_through_a_pause_that_ends_in_time(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(pause_poll=0.02, pause_retry_after=0.3)
    holder = await store.pause_claims(30.0)
    await proxy.drain(5.0)  # reads the pause now

    async def resume_soon() -> None:
        await asyncio.sleep(0.4)
        await store.resume_claims(holder)

    resumer = asyncio.create_task(resume_soon())
    started = time.monotonic()
    async with default_retries_client(proxy, attempt) as client:
        reply = await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    await resumer
    assert reply.choices[0].message.content == "You said: hello"
    refused = (await health(proxy))["refused_paused"]
    assert 1 <= refused <= 2  # retried, each time after the 0.3 s the proxy asked for
    assert 0.3 * refused <= elapsed < 5.0
    spans = await store.query_spans(attempt.rollout_id)
    assert len(spans) == 1  # refused calls are not recorded; the one that got through is


async def test_a_pause_that_outlasts_the_retries_reaches_the_agent_as_a_503_after_each_retry(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(**FAST)
    await store.pause_claims(30.0)
    await proxy.drain(5.0)
    started = time.monotonic()
    async with default_retries_client(proxy, attempt) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert raised.value.status_code == 503
    assert "weight sync" in str(raised.value)
    assert (await health(proxy))["refused_paused"] == 3  # the call and its 2 retries
    assert time.monotonic() - started >= 0.2  # two waits of the proxy's Retry-After


async def test_streaming_call_in_flight_during_a_pause_completes_and_is_stored_while_new_calls_wait(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    proxy = await make_proxy(**FAST)
    stand_in.script(Reply(content="one two three four five six", chunk_delay=0.05))
    async with client_of(proxy, attempt) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)  # type: ignore[arg-type]
        pieces = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                if len(pieces) == 1:
                    await store.pause_claims(30.0)
                    drain = asyncio.create_task(proxy.drain(10.0))
                    await until_health(proxy, "claims_paused", 1)
                    with pytest.raises(openai.InternalServerError):
                        await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
                    assert not drain.done()  # the stream is still in flight
        assert "".join(pieces) == "one two three four five six"
        waited = await drain
    assert waited > 0 and proxy.in_flight() == 0
    [span] = await store.query_spans(attempt.rollout_id)
    assert span.attributes["gen_ai.completion.0.content"] == "one two three four five six"
    assert span.status.status_code == "OK"


async def test_drain_returns_when_the_last_call_ends_and_times_out_naming_the_calls_left(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    proxy = await make_proxy(**FAST)
    stand_in.script(Reply(content="slow", delay=0.6))
    async with client_of(proxy, attempt) as client:
        call = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HELLO))  # type: ignore[arg-type]
        await until_admitted(proxy)
        await store.pause_claims(30.0)
        with pytest.raises(DrainTimeout, match=r"1 call\(s\) were still in flight after 0.1 s"):
            await proxy.drain(0.1)
        assert not call.done()  # a timed-out drain cuts nothing
        await proxy.drain(10.0)
        # The call ended first: its span is stored (before its answer is sent).
        assert len(await store.query_spans(attempt.rollout_id)) == 1
        assert (await call).choices[0].message.content == "slow"


async def test_drain_without_a_pause_is_refused_with_what_to_do(proxy: LLMProxy) -> None:
    with pytest.raises(RuntimeError, match="claims_pause"):
        await proxy.drain(1.0)


@pytest.mark.parametrize("timeout", [-1.0, float("nan")])
async def test_drain_refuses_a_bad_timeout(proxy: LLMProxy, store: RedisLightningStore, timeout: float) -> None:
    await store.pause_claims(30.0)
    with pytest.raises(ValueError, match="drain timeout"):
        await proxy.drain(timeout)


async def test_drain_of_a_threaded_proxy_runs_in_its_loop(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    proxy = await make_proxy(launch_mode="thread", **FAST)
    stand_in.script(Reply(content="slow", delay=0.3))
    async with client_of(proxy, attempt) as client:
        call = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HELLO))  # type: ignore[arg-type]
        await until_admitted(proxy)
        async with store.claims_pause(30.0):
            await proxy.drain(10.0)
            assert proxy.in_flight() == 0 and len(await store.query_spans(attempt.rollout_id)) == 1
        await call


@pytest.mark.parametrize(
    ("keyword", "value"), [("pause_retry_after", 0), ("pause_retry_after", 61), ("pause_poll", -1), ("pause_poll", 10)]
)
def test_barrier_settings_out_of_bounds_are_refused_naming_them(keyword: str, value: float) -> None:
    with pytest.raises(ValueError, match=keyword):
        LLMProxy(**{keyword: value})


async def test_a_pause_whose_holder_crashed_expires_and_the_proxy_serves_again(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(**FAST)
    # The holder pauses and dies: nobody renews or resumes; only the TTL ends the pause.
    await store.pause_claims(0.4)
    await until_health(proxy, "claims_paused", 1)
    async with client_of(proxy, attempt) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
        await until_health(proxy, "claims_paused", 0, within=5.0)
        reply = await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "You said: hello"


async def test_metrics_show_the_barrier(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(**FAST)
    await store.update_resources("rs-1", {})
    await store.pause_claims(30.0)
    await proxy.drain(5.0)
    async with aiohttp.ClientSession() as session:
        async with session.post(call_url(proxy, attempt), json={"model": MODEL, "messages": HELLO}) as response:
            assert response.status == 503
        async with session.get(f"{proxy.endpoint}/metrics") as response:
            text = await response.text()
    assert "lq_proxy_claims_paused 1.0" in text
    assert "lq_proxy_calls_admitted_in_flight 0.0" in text
    assert "lq_proxy_calls_refused_paused_total 1.0" in text
    assert f"lq_proxy_policy_version {float(await store.policy_version())}" in text


async def test_drain_of_a_stopped_proxy_says_it_is_not_running(proxy: LLMProxy) -> None:
    await proxy.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await proxy.drain(1.0)


async def test_a_store_without_a_claims_pause_is_served_as_before_and_drain_says_why(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    class WithoutPause(RedisLightningStore):
        async def claims_paused(self) -> bool:
            raise NotSupported(self, "claims_paused()")

    other = WithoutPause(client_factory=store._factory, namespace=store.namespace)
    try:
        proxy = await make_proxy(store=other, **FAST)
        async with client_of(proxy, attempt) as client:
            reply = await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "You said: hello"
        with pytest.raises(NotImplementedError, match="WithoutPause"):
            await proxy.drain(1.0)
        assert "claims_paused" not in await health(proxy)
    finally:
        await other.aclose()


async def test_a_corrupt_proxy_record_is_reported_naming_its_key(
    make_proxy: ProxyFactory, store: RedisLightningStore
) -> None:
    await make_proxy(**FAST)
    key = f"{store.keys.prefix}px:px-forged"
    await store._redis.set(key, b"\x81\xa2id\xc0", px=60_000)  # a map without the other fields
    await store._redis.zadd(f"{store.keys.prefix}pxidx", {"px-forged": time.time() * 1000 + 60_000})
    with pytest.raises(ValueError, match=re.escape(key)):
        await proxy_statuses(store)


_HOLDER_THAT_DIES = """
import asyncio, os, sys
from lightning_queue import RedisLightningStore

async def main():
    store = RedisLightningStore(sys.argv[1], namespace=sys.argv[2])
    async with store.claims_pause(ttl=1.0):
        print("paused", flush=True)
        await asyncio.sleep(0.3)
        os.kill(os.getpid(), 9)  # dies holding the pause: no resume, no more renewals

asyncio.run(main())
"""


async def test_an_algorithm_killed_while_paused_stops_the_proxy_for_one_ttl_at_most(
    make_proxy: ProxyFactory, redis_url: str, make_store: Any, attempt: AttemptedRollout
) -> None:
    store = make_store()
    if store.url != redis_url:
        pytest.skip("a real process crash needs the real redis-server")
    proxy = await make_proxy(store=store, **FAST)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER_THAT_DIES, redis_url, store.namespace, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"paused"
    await until_health(proxy, "claims_paused", 1)
    assert await asyncio.wait_for(child.wait(), 30) == -9
    stopped_for = await until_health(proxy, "claims_paused", 0, within=10.0)
    assert stopped_for < 1.0 + 0.5  # the TTL, a poll and some slack
    async with client_of(proxy, attempt) as client:
        reply = await client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "You said: hello"
