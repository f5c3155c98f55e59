"""Loopback by default, an optional bearer token, and upstream keys that never leave the proxy."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import openai
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy, UpstreamModel
from lightning_queue.testing import Reply, StandInModelServer, StandInRequest
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import MODEL, UPSTREAM_KEY, ProxyFactory, client_of

TOKEN = "proxy-token-77"


def test_the_proxy_binds_loopback_unless_told_otherwise() -> None:
    assert LLMProxy().host == "127.0.0.1"
    assert LLMProxy(host=None).host == "127.0.0.1"


async def test_with_a_token_requests_without_it_get_401(make_proxy: ProxyFactory, attempt: AttemptedRollout) -> None:
    proxy = await make_proxy(auth_token=TOKEN)
    url = proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id).endpoint + "/v1/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    statuses = {}
    async with aiohttp.ClientSession() as session:
        for label, headers in {
            "none": {},
            "wrong": {"Authorization": "Bearer nope"},
            "not bearer": {"Authorization": TOKEN},
            "right": {"Authorization": f"Bearer {TOKEN}"},
        }.items():
            async with session.post(url, json=body, headers=headers) as response:
                statuses[label] = response.status
                if response.status == 401:
                    assert (await response.json())["error"]["type"] == "authentication_error"
        async with session.get(f"{proxy.endpoint}/v1/models") as response:
            statuses["models"] = response.status
        async with session.get(f"{proxy.endpoint}/health") as response:
            statuses["health"] = response.status

    assert statuses == {"none": 401, "wrong": 401, "not bearer": 401, "right": 200, "models": 401, "health": 200}


async def test_the_resource_of_a_token_protected_proxy_carries_the_token(
    make_proxy: ProxyFactory, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(auth_token=TOKEN)

    async with client_of(proxy, attempt) as client:
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    async with client_of(proxy, attempt, api_key="wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert answer.choices[0].message.content == "You said: hi"
    assert proxy.as_resource().api_key == TOKEN


async def test_upstream_key_never_reaches_spans_responses_logs_or_resources(
    make_proxy: ProxyFactory,
    stand_in: StandInModelServer,
    store: RedisLightningStore,
    attempt: AttemptedRollout,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await make_proxy()
    # A careless upstream that echoes the key it was sent, in an answer and in an error.
    stand_in.script(
        Reply(content=f"I was called with {UPSTREAM_KEY}"),
        Reply(content=f"streaming {UPSTREAM_KEY} now"),
        Reply(status=401, error=f"Incorrect API key provided: {UPSTREAM_KEY}"),
    )
    seen: list[str] = []
    async with client_of(proxy, attempt) as client:
        plain = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        seen.append(plain.http_response.text)
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        seen += [chunk.model_dump_json() async for chunk in stream]
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        seen.append(raised.value.response.text)
    spans = await store.query_spans(attempt.rollout_id)

    assert len(spans) == 3 and all(stand_in_request_had_key(r) for r in stand_in.requests)
    assert "***" in seen[0]
    for text in [*seen, *(json.dumps(s.model_dump(mode="json")) for s in spans), caplog.text]:
        assert UPSTREAM_KEY not in text
    for resource in (proxy.as_resource(), proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id)):
        assert UPSTREAM_KEY not in resource.model_dump_json()
    assert UPSTREAM_KEY not in repr(proxy) + repr(proxy.model_list)


def stand_in_request_had_key(request: StandInRequest) -> bool:
    return request.headers.get("Authorization") == f"Bearer {UPSTREAM_KEY}"


async def test_the_client_credentials_are_not_forwarded_upstream(
    make_proxy: ProxyFactory, stand_in: StandInModelServer, attempt: AttemptedRollout
) -> None:
    proxy = await make_proxy(auth_token=TOKEN)
    async with client_of(proxy, attempt, default_headers={"Cookie": "session=abc"}) as client:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    [received] = stand_in.requests
    assert TOKEN not in json.dumps(received.headers) and "Cookie" not in received.headers


async def test_unattributed_calls_when_allowed_are_served_counted_and_warned_about_but_not_recorded(
    make_proxy: ProxyFactory, store: RedisLightningStore, attempt: AttemptedRollout, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy(allow_unattributed=True)
    async with AsyncOpenAI(base_url=proxy.as_resource().endpoint, api_key="x", max_retries=0) as client:
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        await client.completions.create(model=MODEL, prompt="hi")

    assert answer.choices[0].message.content == "You said: hi"
    assert proxy.stats.unattributed_calls == 2 and proxy.stats.recorded_spans == 0
    assert "without the /rollout/<rid>/attempt/<aid> prefix" in caplog.text
    assert len(await store.query_spans(attempt.rollout_id)) == 0


SLASHED_KEY = "sk-ab/cd+ef=9f3c2e7d-SECRET"
# The forms upstreams have been seen to echo a key in: JSON-escaped slash, \u escapes, URL encoding.
ECHOED_FORMS = (
    SLASHED_KEY.replace("/", "\\/"),
    "".join(f"\\u{ord(c):04x}" if c in "s/+" else c for c in SLASHED_KEY),
    "".join(f"\\u{ord(c):04X}" for c in SLASHED_KEY),
    quote(SLASHED_KEY, safe=""),
    "".join(c if c.isalnum() else f"%{ord(c):02x}" for c in SLASHED_KEY),
)


@pytest.fixture
async def echoing_upstream() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An upstream that writes its own JSON, echoing the key in each escaped form; the queue is its script."""
    script: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        status, _, body = script.pop(0).partition(b" ")
        return web.Response(body=body, status=int(status), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site.port}/v1", script
    await runner.cleanup()


async def test_an_upstream_key_echoed_in_any_escaped_form_is_scrubbed_everywhere(
    make_proxy: ProxyFactory,
    store: RedisLightningStore,
    attempt: AttemptedRollout,
    echoing_upstream: tuple[str, list[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, script = echoing_upstream
    upstream = UpstreamModel(name=MODEL, base_url=url, model="m", api_key=SLASHED_KEY)
    proxy = await make_proxy(model_list=[upstream])
    content = " | ".join(ECHOED_FORMS)
    answer = {"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop"}]}
    answer["choices"][0]["message"] = {"role": "assistant", "content": "@@"}  # type: ignore[index]
    script.append(b"200 " + json.dumps(answer).encode().replace(b"@@", content.encode()))
    script.append(b'401 {"error": {"message": "Incorrect API key provided: @@"}}'.replace(b"@@", content.encode()))

    seen: list[str] = []
    async with client_of(proxy, attempt) as client:
        plain = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        seen += [plain.http_response.text, plain.parse().model_dump_json()]
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        seen += [raised.value.response.text, raised.value.message]
    spans = await store.query_spans(attempt.rollout_id)

    assert len(spans) == 2 and seen[1].count("***") == len(ECHOED_FORMS)
    texts = [*seen, *(json.dumps(s.model_dump(mode="json"), ensure_ascii=False) for s in spans), caplog.text]
    for text in texts:
        for form in (SLASHED_KEY, *ECHOED_FORMS, "ab/cd", "ab%2F", "ab\\/"):
            assert form not in text
