"""Bad requests and failing upstreams get clear JSON errors, are recorded where they reached an upstream,
and never stop the proxy from serving the next call."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import quote

import aiohttp
import fakeredis
import openai
import pytest
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy, UpstreamModel
from lightning_queue.testing import Reply, StandInModelServer
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import MODEL, ProxyFactory, client_of, upstream_of

HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}


def attempt_url(proxy: LLMProxy, attempt: AttemptedRollout, path: str = "/v1/chat/completions") -> str:
    return proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id).endpoint + path


async def post(url: str, data: bytes | None = None, json_body: Any = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=data, json=json_body) as response:
        return response.status, await response.json()


async def still_serves(proxy: LLMProxy, attempt: AttemptedRollout) -> None:
    async with client_of(proxy, attempt) as client:
        answer = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "still there?"}]
        )
    assert answer.choices[0].message.content == "You said: still there?"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"messages": []}', 400, 'needs \\"model\\"'),
        (b'{"model": "nope", "messages": []}', 404, "unknown model 'nope'; this proxy serves ['policy']"),
    ],
)
async def test_bad_bodies_get_4xx_json_errors_and_are_not_recorded(
    proxy: LLMProxy,
    store: RedisLightningStore,
    attempt: AttemptedRollout,
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    got, payload = await post(attempt_url(proxy, attempt), data=body)

    assert got == status and payload["error"]["code"] == status
    assert fragment.replace("\\", "") in payload["error"]["message"]
    assert len(await store.query_spans(attempt.rollout_id)) == 0
    await still_serves(proxy, attempt)


async def test_oversized_body_gets_413(make_proxy: ProxyFactory, attempt: AttemptedRollout) -> None:
    proxy = await make_proxy(max_body_bytes=4096)
    huge = {**HELLO, "messages": [{"role": "user", "content": "x" * 10_000}]}

    status, payload = await post(attempt_url(proxy, attempt), json_body=huge)

    assert status == 413 and "limit of 4096 bytes" in payload["error"]["message"]
    await still_serves(proxy, attempt)


async def test_unreachable_upstream_gets_502_and_an_error_span(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    dead = UpstreamModel(name="dead", base_url=f"http://127.0.0.1:{closed_port()}/v1", model="x")
    proxy = await make_proxy(model_list=[dead])

    async with client_of(proxy, attempt) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="dead", messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 502 and "unreachable" in raised.value.message
    [span] = await store.query_spans(attempt.rollout_id)
    assert span.status.status_code == "ERROR" and "unreachable" in (span.status.description or "")
    assert span.attributes["error.type"] == "upstream_unreachable"
    assert span.attributes["http.response.status_code"] == 502
    assert span.attributes["gen_ai.prompt.0.content"] == "hi"
    assert proxy.stats.upstream_errors == 1


async def test_slow_upstream_gets_504_and_an_error_span(
    make_proxy: ProxyFactory, stand_in: StandInModelServer, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(model_list=[upstream_of(stand_in, timeout=0.2)])
    stand_in.script(Reply(delay=1.0))

    async with client_of(proxy, attempt) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 504
    [span] = await store.query_spans(attempt.rollout_id)
    assert span.attributes["error.type"] == "upstream_timeout"


@pytest.mark.parametrize("status", [400, 429, 500])
async def test_upstream_errors_pass_through_with_their_status_and_are_recorded(
    client: AsyncOpenAI,
    stand_in: StandInModelServer,
    store: RedisLightningStore,
    attempt: AttemptedRollout,
    status: int,
) -> None:
    stand_in.script(Reply(status=status, error="the model is on fire"))

    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == status and "the model is on fire" in raised.value.message
    [span] = await store.query_spans(attempt.rollout_id)
    assert span.status.status_code == "ERROR" and "the model is on fire" in (span.status.description or "")
    assert span.attributes["http.response.status_code"] == status


async def test_upstream_dying_mid_stream_fails_the_client_and_keeps_the_partial_record(
    client: AsyncOpenAI, stand_in: StandInModelServer, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    stand_in.script(Reply(content="one two three four five", die_after=2))
    received: list[str] = []

    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "one two"
    [span] = await store.query_spans(attempt.rollout_id)
    assert span.status.status_code == "ERROR" and span.attributes["error.type"] == "upstream_error"
    assert span.attributes["gen_ai.completion.0.content"] == "one two"
    assert len(span.attributes["response_token_ids"]) == 2


async def test_upstream_dropping_the_connection_before_answering_gets_502(
    client: AsyncOpenAI, stand_in: StandInModelServer, proxy: LLMProxy, attempt: AttemptedRollout
) -> None:
    stand_in.script(Reply(die_after=0))

    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 502
    await still_serves(proxy, attempt)


async def test_client_leaving_mid_stream_is_recorded_and_the_proxy_carries_on(
    proxy: LLMProxy, stand_in: StandInModelServer, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    stand_in.script(Reply(content="a b c d e f g h", chunk_delay=0.05))
    async with aiohttp.ClientSession() as session:
        response = await session.post(attempt_url(proxy, attempt), json={**HELLO, "stream": True})
        await response.content.readline()
        response.close()

    for _ in range(100):
        spans = list(await store.query_spans(attempt.rollout_id))
        if spans:
            break
        await asyncio.sleep(0.05)
    [span] = spans
    assert span.attributes["error.type"] == "client_disconnected"
    await still_serves(proxy, attempt)


@pytest.mark.parametrize("rollout_id", ["ro:x", "{tag}", "a" * 129, "ro x"])
async def test_malformed_path_ids_get_404_before_any_key_is_touched(
    proxy: LLMProxy, store: RedisLightningStore, rollout_id: str
) -> None:
    url = f"{proxy.endpoint}/rollout/{quote(rollout_id, safe='')}/attempt/at-1/v1/chat/completions"

    status, payload = await post(url, json_body=HELLO)

    # aiohttp's router already refuses some (braces); our check refuses the rest; both say not_found.
    assert status == 404 and payload["error"]["type"] == "not_found"
    await proxy.stop()  # its own status record goes with it
    assert await store.purge() == 0  # nothing was written, not even a sequence counter


async def test_unknown_rollout_or_attempt_gets_404_and_no_sequence_id(
    proxy: LLMProxy, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    endpoint = proxy.endpoint
    unknown_rollout = f"{endpoint}/rollout/ro-missing/attempt/{attempt.attempt.attempt_id}/v1/chat/completions"
    unknown_attempt = f"{endpoint}/rollout/{attempt.rollout_id}/attempt/at-missing/v1/chat/completions"

    status_rollout, payload_rollout = await post(unknown_rollout, json_body=HELLO)
    status_attempt, payload_attempt = await post(unknown_attempt, json_body=HELLO)

    assert status_rollout == 404 and "rollout 'ro-missing' does not exist" in payload_rollout["error"]["message"]
    assert status_attempt == 404 and "attempt 'at-missing' does not exist" in payload_attempt["error"]["message"]
    assert await store.get_next_span_sequence_id(attempt.rollout_id, attempt.attempt.attempt_id) == 1


async def test_unknown_routes_and_methods_get_json_errors(proxy: LLMProxy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.endpoint}/v1/embeddings", json={}) as response:
            missing = (response.status, await response.json())
        async with session.get(f"{proxy.endpoint}/v1/chat/completions") as response:
            wrong_method = (response.status, await response.json())

    assert missing[0] == 404 and "/v1/embeddings" in missing[1]["error"]["message"]
    assert wrong_method[0] == 405 and wrong_method[1]["error"]["type"] == "method_not_allowed"


async def test_a_span_the_store_refuses_does_not_fail_the_call(
    store: RedisLightningStore,
    make_proxy: ProxyFactory,
    attempt: AttemptedRollout,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(*_args: Any) -> None:
        raise ValueError("the store refuses this span")

    monkeypatch.setattr(store, "add_many_spans", refuse)
    monkeypatch.setattr(store, "add_span", refuse)
    proxy = await make_proxy()

    async with client_of(proxy, attempt) as client:
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])

    assert answer.choices[0].message.content == "You said: hello"
    assert proxy.stats.span_write_errors == 1 and proxy.stats.recorded_spans == 0
    assert "was not stored" in caplog.text


async def test_an_unreachable_store_gets_503_and_the_proxy_recovers_with_it(stand_in: StandInModelServer) -> None:
    server = fakeredis.FakeServer()
    down = RedisLightningStore(client_factory=lambda: fakeredis.FakeAsyncRedis(server=server), namespace="down")
    attempt = await down.start_rollout(input=None)
    async with LLMProxy(model_list=[upstream_of(stand_in)], store=down, launch_mode="asyncio") as proxy:
        server.connected = False
        status, payload = await post(attempt_url(proxy, attempt), json_body=HELLO)
        server.connected = True
        await still_serves(proxy, attempt)
    await down.aclose()

    assert status == 503 and payload["error"]["type"] == "store_error"


@pytest.mark.parametrize("which", ["rollout", "attempt"])
async def test_a_path_id_with_a_trailing_newline_is_refused_as_invalid(
    proxy: LLMProxy, store: RedisLightningStore, attempt: AttemptedRollout, which: str
) -> None:
    # `$` matches before a final newline: the id of a real attempt plus '\n' must not pass the syntax check.
    rollout_id, attempt_id = attempt.rollout_id, attempt.attempt.attempt_id
    if which == "rollout":
        rollout_id += "\n"
    else:
        attempt_id += "\n"
    path = f"/rollout/{quote(rollout_id, safe='')}/attempt/{quote(attempt_id, safe='')}/v1/chat/completions"
    url = proxy.endpoint + path

    status, payload = await post(url, json_body=HELLO)

    assert status == 404 and f"invalid {which} id" in payload["error"]["message"], payload
    assert len(await store.query_spans(attempt.rollout_id)) == 0
