"""Start, stop, restart, thread or in-loop serving, resources and model lists."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import openai
import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import LLM, AttemptedRollout, ProxyLLM
from tests.support.proxy import MODEL, ProxyFactory, client_of, upstream_of


async def test_start_needs_a_store() -> None:
    with pytest.raises(ValueError, match="needs a store"):
        await LLMProxy(model_list=[]).start()


async def test_thread_mode_answers_while_the_callers_loop_is_blocked(
    store: RedisLightningStore, stand_in: StandInModelServer, attempt: AttemptedRollout
) -> None:
    async with LLMProxy(model_list=[upstream_of(stand_in)], store=store, launch_mode="thread") as proxy:
        # A blocking read on this loop: only a proxy on its own thread can answer it.
        with urllib.request.urlopen(f"{proxy.endpoint}/health", timeout=10) as response:  # noqa: ASYNC210
            assert json.loads(response.read())["status"] == "ok"
        # The stand-in lives on this loop, so the synchronous client runs beside it.
        resource = proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id)
        with openai.OpenAI(base_url=resource.endpoint, api_key="x", max_retries=0, timeout=10) as client:
            answer = await asyncio.to_thread(
                client.chat.completions.create, model=MODEL, messages=[{"role": "user", "content": "from a thread"}]
            )
        assert answer.choices[0].message.content == "You said: from a thread"
        assert proxy.is_running()
    assert not proxy.is_running()
    [span] = await store.query_spans(attempt.rollout_id)
    assert span.attributes["gen_ai.prompt.0.content"] == "from a thread"


async def test_restart_keeps_the_port_and_applies_a_new_model_list(
    make_proxy: ProxyFactory, stand_in: StandInModelServer, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy()
    port = proxy.port
    proxy.update_model_list([upstream_of(stand_in, name="renamed")])
    assert proxy.as_resource().model == "renamed"  # in memory at once...

    async with client_of(proxy, attempt) as client:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "old name"}])
        await proxy.restart()  # ...and served after the restart
        await client.chat.completions.create(model="renamed", messages=[{"role": "user", "content": "new"}])
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "old"}])
    assert proxy.port == port and proxy.is_running()


async def test_stop_twice_only_warns(make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture) -> None:
    proxy = await make_proxy()
    await proxy.stop()
    await proxy.stop()
    assert not proxy.is_running() and "not running" in caplog.text


async def test_starting_a_running_proxy_is_refused(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    with pytest.raises(RuntimeError, match="already running"):
        await proxy.start()


async def test_a_taken_port_fails_start_with_an_os_error(make_proxy: ProxyFactory, store: RedisLightningStore) -> None:
    first = await make_proxy()
    with pytest.raises(OSError):
        await LLMProxy(port=first.port, model_list=[], store=store).start()


def test_as_resource_follows_the_contract() -> None:
    proxy = LLMProxy(port=8123, model_list=[{"name": "a", "base_url": "http://127.0.0.1:9/v1"}])

    snapshot = proxy.as_resource(sampling_parameters={"temperature": 0.7})
    attempt = proxy.as_resource("ro-1", "at-1")

    assert isinstance(snapshot, ProxyLLM) and snapshot.endpoint == "http://127.0.0.1:8123"
    assert snapshot.model == "a" and snapshot.sampling_parameters == {"temperature": 0.7} and snapshot.api_key is None
    assert type(attempt) is LLM and attempt.endpoint == "http://127.0.0.1:8123/rollout/ro-1/attempt/at-1"
    assert snapshot.get_base_url("ro-1", "at-1") == attempt.endpoint
    with pytest.raises(ValueError, match="both"):
        proxy.as_resource("ro-1")


def test_as_resource_needs_a_model_name_when_there_are_several() -> None:
    upstreams = [{"name": n, "base_url": "http://127.0.0.1:9/v1"} for n in ("a", "b")]
    proxy = LLMProxy(port=8123, model_list=upstreams)
    with pytest.raises(ValueError, match="needs model="):
        proxy.as_resource()
    assert proxy.as_resource(model="b").model == "b"
    with pytest.raises(ValueError, match="0 models"):
        LLMProxy(port=1).as_resource()


def test_as_resource_before_a_port_is_known_says_to_start_first() -> None:
    with pytest.raises(RuntimeError, match="start"):
        LLMProxy(model_list=[{"name": "a", "base_url": "http://127.0.0.1:9/v1"}]).as_resource()


async def test_several_upstreams_under_one_name_share_the_calls(
    make_proxy: ProxyFactory, stand_in: StandInModelServer, attempt: AttemptedRollout
) -> None:
    async with StandInModelServer(api_key=None) as second:
        proxy = await make_proxy(model_list=[upstream_of(stand_in), upstream_of(second, api_key=None)])
        async with client_of(proxy, attempt) as client:
            for i in range(4):
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": str(i)}])
        assert len(stand_in.requests) == 2 and len(second.requests) == 2
    assert proxy.as_resource().model == MODEL


async def test_health_reports_counters(make_proxy: ProxyFactory, attempt: AttemptedRollout) -> None:
    proxy = await make_proxy()
    async with client_of(proxy, attempt) as client:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.endpoint}/health") as response:
        health = await response.json()
    assert health == {
        "status": "ok",
        "calls": 1,
        "recorded_spans": 1,
        "unattributed_calls": 0,
        "upstream_errors": 0,
        "span_write_errors": 0,
        "truncated_spans": 0,
        "open_connections": 1,  # the health check's own
        "refused_connections": 0,
        "evicted_connections": 0,
        "head_timeouts": 0,
        "in_flight": 0,  # admitted calls not finished: what a weight-sync drain waits for
        "refused_paused": 0,
        "claims_paused": 0,
        "policy_version": 0,
    }
