"""Several proxies on one namespace: each publishes its drain status; `wait_proxies_drained` waits for all."""

from __future__ import annotations

import asyncio

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import DrainTimeout, proxy_statuses, wait_proxies_drained
from lightning_queue.testing import Reply, StandInModelServer
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import MODEL, ProxyFactory, client_of, until_admitted

FAST = {"pause_poll": 0.02, "pause_retry_after": 0.1}
HELLO = [{"role": "user", "content": "hello"}]


async def test_every_running_proxy_publishes_its_status_and_a_stopped_one_withdraws(
    make_proxy: ProxyFactory, store: RedisLightningStore
) -> None:
    first = await make_proxy(**FAST)
    second = await make_proxy(**FAST)
    statuses = await proxy_statuses(store)
    assert sorted(s.endpoint for s in statuses) == sorted([first.endpoint, second.endpoint])
    assert all(s.in_flight == 0 and not s.paused for s in statuses)
    await second.stop()
    assert [s.endpoint for s in await proxy_statuses(store)] == [first.endpoint]


async def test_wait_proxies_drained_waits_for_the_call_in_flight_on_another_proxy(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    await make_proxy(**FAST)
    busy = await make_proxy(**FAST)
    stand_in.script(Reply(content="slow", delay=0.5))
    async with client_of(busy, attempt) as client:
        call = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HELLO))  # type: ignore[arg-type]
        await until_admitted(busy)
        async with store.claims_pause(30.0):
            statuses = await wait_proxies_drained(store, timeout=10.0)
            # Drained means that call ended first: its span is stored (before its answer is sent).
            assert len(await store.query_spans(attempt.rollout_id)) == 1
            assert len(statuses) == 2 and all(s.paused and s.in_flight == 0 for s in statuses)
        assert (await call).choices[0].message.content == "slow"


async def test_wait_proxies_drained_times_out_naming_the_busy_proxy(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    proxy = await make_proxy(**FAST)
    stand_in.script(Reply(content="slow", delay=1.0))
    async with client_of(proxy, attempt) as client:
        call = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HELLO))  # type: ignore[arg-type]
        await until_admitted(proxy)
        async with store.claims_pause(30.0):
            with pytest.raises(DrainTimeout, match=r"1 of 1 proxies .* 1 call\(s\) in flight") as raised:
                await wait_proxies_drained(store, timeout=0.3)
            assert proxy.endpoint in str(raised.value)
        await call


async def test_wait_proxies_drained_needs_the_pause(make_proxy: ProxyFactory, store: RedisLightningStore) -> None:
    await make_proxy(**FAST)
    with pytest.raises(RuntimeError, match="claims_pause"):
        await wait_proxies_drained(store, timeout=1.0)


async def test_a_drain_ack_from_an_earlier_pause_does_not_count_for_the_next(
    make_proxy: ProxyFactory, store: RedisLightningStore
) -> None:
    proxy = await make_proxy(pause_poll=0.02)
    async with store.claims_pause(30.0):
        [first] = await wait_proxies_drained(store, timeout=5.0)
    # Paused again at once: the record still says "paused, 0 in flight" with the first drain's token.
    async with store.claims_pause(30.0):
        [second] = await wait_proxies_drained(store, timeout=5.0)
    assert first.drain_ack != second.drain_ack
    assert second.endpoint == proxy.endpoint


async def test_with_no_proxy_running_the_drain_returns_at_once(store: RedisLightningStore) -> None:
    async with store.claims_pause(30.0):
        assert await wait_proxies_drained(store, timeout=0.5) == []
