"""Hostile inputs of issue 10: dead attempts, unrecordable calls, amplifying and malformed bodies, unattributed
calls. Each is refused before the upstream spends any time on it, or recorded in a bounded, flagged form."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import AttemptedRollout, RolloutConfig
from tests.support.proxy import MODEL, ProxyFactory, client_of

HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}


def attempt_url(proxy: LLMProxy, rollout_id: str, attempt_id: str, path: str = "/v1/chat/completions") -> str:
    return proxy.as_resource(rollout_id, attempt_id).endpoint + path


async def post(url: str, data: bytes | None = None, json_body: Any = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data if data is not None else json.dumps(json_body).encode(), headers=headers) as r,
    ):
        return r.status, await r.json()


# --- dead work: finished rollouts, finished or superseded attempts --------------------------------------------
@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
async def test_a_call_of_a_finished_rollout_gets_409_and_never_reaches_the_upstream(
    proxy: LLMProxy, stand_in: StandInModelServer, store: RedisLightningStore, status: str
) -> None:
    attempted = await store.start_rollout(input=None)
    await store.update_rollout(attempted.rollout_id, status=status)  # type: ignore[arg-type]

    got, payload = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=HELLO)

    assert got == 409 and payload["error"]["type"] == "attempt_not_running"
    assert payload["error"]["code"] == 409 and status in payload["error"]["message"]
    assert stand_in.requests == [] and len(await store.query_spans(attempted.rollout_id)) == 0


async def test_a_superseded_attempt_gets_409_and_the_latest_one_is_served(
    proxy: LLMProxy, stand_in: StandInModelServer, store: RedisLightningStore
) -> None:
    first = await store.start_rollout(input=None)
    second = await store.start_attempt(first.rollout_id)

    old, payload = await post(attempt_url(proxy, first.rollout_id, first.attempt.attempt_id), json_body=HELLO)
    new, _ = await post(attempt_url(proxy, second.rollout_id, second.attempt.attempt_id), json_body=HELLO)

    assert old == 409 and "superseded" in payload["error"]["message"]
    assert second.attempt.attempt_id in payload["error"]["message"]
    assert new == 200 and len(stand_in.requests) == 1
    [span] = await store.query_spans(first.rollout_id, "latest")
    assert span.attempt_id == second.attempt.attempt_id


async def test_an_attempt_that_reported_its_end_gets_409(proxy: LLMProxy, store: RedisLightningStore) -> None:
    attempted = await store.start_rollout(input=None)
    await store.update_attempt(attempted.rollout_id, attempted.attempt.attempt_id, status="failed")
    rollout = await store.get_rollout_by_id(attempted.rollout_id)
    assert rollout is not None

    got, payload = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=HELLO)

    assert got == 409 and "failed" in payload["error"]["message"]


@pytest.mark.parametrize("status", ["unresponsive", "timeout"])
async def test_the_latest_attempt_the_store_gave_up_on_may_still_finish_its_calls(
    proxy: LLMProxy, store: RedisLightningStore, status: str
) -> None:
    # A SIGSTOPped worker that wakes up finds its attempt unresponsive; while the rollout waits for a
    # retry, that attempt is still the latest and its calls are still real work.
    retries = RolloutConfig(max_attempts=3, retry_condition=["unresponsive", "timeout"])
    attempted = await store.start_rollout(input=None, config=retries)
    await store.update_attempt(attempted.rollout_id, attempted.attempt.attempt_id, status=status)  # type: ignore[arg-type]

    rollout = await store.get_rollout_by_id(attempted.rollout_id)

    got, _ = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=HELLO)

    assert rollout is not None and rollout.status == "requeuing"
    assert got == 200 and len(await store.query_spans(attempted.rollout_id)) == 1


async def test_the_store_giving_up_without_retries_ends_the_rollout_and_its_calls(
    proxy: LLMProxy, store: RedisLightningStore
) -> None:
    attempted = await store.start_rollout(input=None)
    await store.update_attempt(attempted.rollout_id, attempted.attempt.attempt_id, status="unresponsive")

    got, payload = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=HELLO)

    assert got == 409 and "is failed" in payload["error"]["message"]


async def test_a_dead_verdict_is_cached_briefly_and_alive_is_never_cached(
    proxy: LLMProxy, stand_in: StandInModelServer, store: RedisLightningStore
) -> None:
    attempted = await store.start_rollout(input=None)
    url = attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id)
    alive, _ = await post(url, json_body=HELLO)
    await store.update_rollout(attempted.rollout_id, status="succeeded")

    dead, _ = await post(url, json_body=HELLO)

    assert (alive, dead) == (200, 409) and len(stand_in.requests) == 1


# --- unrecordable calls ---------------------------------------------------------------------------------------
async def test_a_request_the_store_cannot_record_gets_413_before_forwarding(
    make_store: Any, make_proxy: ProxyFactory, stand_in: StandInModelServer
) -> None:
    small = make_store(max_span_bytes=64 << 10)
    attempted = await small.start_rollout(input=None)
    proxy = await make_proxy(store=small)
    body = {**HELLO, "messages": [{"role": "user", "content": "x" * (100 << 10)}]}

    got, payload = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=body)

    assert got == 413 and "65536" in payload["error"]["message"] and "record" in payload["error"]["message"]
    assert stand_in.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_response_too_large_to_record_is_stored_truncated_and_flagged(
    make_store: Any, make_proxy: ProxyFactory, stream: bool
) -> None:
    small = make_store(max_span_bytes=64 << 10)
    attempted = await small.start_rollout(input=None)
    proxy = await make_proxy(store=small)
    words = " ".join(f"w{i}" for i in range(8000))  # echoed back: request and answer together overflow the span

    async with client_of(proxy, attempted) as client:
        if stream:
            chunks = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": words}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": words}])
            text = answer.choices[0].message.content or ""

    assert text == f"You said: {words}"
    [span] = await small.query_spans(attempted.rollout_id)
    assert span.attributes["lq.proxy.truncated"] is True
    assert span.attributes["lq.proxy.span_limit_bytes"] == 64 << 10
    assert span.attributes["gen_ai.prompt.0.content"] == words  # the request part is whole
    assert span.status.status_code == "ERROR" and span.attributes["error.type"] == "span_truncated"
    assert proxy.stats.span_write_errors == 0


async def test_a_body_that_flattening_would_amplify_is_refused_without_building_it(
    make_store: Any, make_proxy: ProxyFactory, stand_in: StandInModelServer
) -> None:
    # 8 levels of 400-character keys, then 4,000 leaves: a ~50 KB body whose dotted keys would total 13 MB.
    small = make_store(max_span_bytes=1 << 20)
    attempted = await small.start_rollout(input=None)
    proxy = await make_proxy(store=small)
    leaves: Any = {f"k{i}": i for i in range(4000)}
    for level in range(8):
        leaves = {f"{level:03d}" + "n" * 397: leaves}
    body = {**HELLO, "messages": [{"role": "user", "content": "hi", "meta": leaves}]}

    got, payload = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=body)

    assert got == 413 and "recorded form" in payload["error"]["message"]
    assert stand_in.requests == []


async def test_structure_nested_deeper_than_the_flattening_bound_is_recorded_as_json(
    make_store: Any, make_proxy: ProxyFactory
) -> None:
    # 40 levels of 400-character keys: flattened in full, the last of 4,000 keys alone would be 16 KB long.
    small = make_store(max_span_bytes=1 << 20)
    attempted = await small.start_rollout(input=None)
    proxy = await make_proxy(store=small)
    leaves: Any = {f"k{i}": i for i in range(4000)}
    for level in range(40):
        leaves = {f"{level:03d}" + "n" * 397: leaves}
    body = {**HELLO, "messages": [{"role": "user", "content": "hi", "meta": leaves}]}

    got, _ = await post(attempt_url(proxy, attempted.rollout_id, attempted.attempt.attempt_id), json_body=body)

    assert got == 200
    [span] = await small.query_spans(attempted.rollout_id)
    [deep_key] = [k for k in span.attributes if k.startswith("gen_ai.prompt.0.meta.")]
    assert deep_key.count(".") < 16 and isinstance(span.attributes[deep_key], str)
    assert '"k3999": 3999' in span.attributes[deep_key]
    assert max(len(k) for k in span.attributes) < 8000


# --- malformed JSON -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"model": "policy", "messages": [], "x": ' + b"[" * 990 + b"]" * 990 + b"}", "nested deeper than"),
        (b'{"model": "policy", "messages": [], "x": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper than"),
        (b'{"model": "policy", "messages": [], "temperature": NaN}', "NaN"),
        (b'{"model": "policy", "messages": [], "temperature": Infinity}', "Infinity"),
        (b'{"model": "policy", "messages": [], "temperature": -Infinity}', "-Infinity"),
    ],
)
async def test_too_deep_json_and_non_finite_numbers_get_400_and_are_not_forwarded(
    proxy: LLMProxy, stand_in: StandInModelServer, attempt: AttemptedRollout, raw: bytes, fragment: str
) -> None:
    got, payload = await post(attempt_url(proxy, attempt.rollout_id, attempt.attempt.attempt_id), data=raw)

    assert got == 400 and fragment in payload["error"]["message"]
    assert stand_in.requests == []


# --- unattributed calls ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions", "/v1/completions"])
async def test_unattributed_calls_are_refused_by_default_with_the_url_to_use(
    proxy: LLMProxy, stand_in: StandInModelServer, path: str
) -> None:
    body = HELLO if "chat" in path else {"model": MODEL, "prompt": "hi"}
    got, payload = await post(proxy.endpoint + path, json_body=body)

    assert got == 404 and payload["error"]["type"] == "unattributed_call"
    assert "/rollout/<rollout_id>/attempt/<attempt_id>/v1" in payload["error"]["message"]
    assert "allow-unattributed" in payload["error"]["message"]
    assert stand_in.requests == [] and proxy.stats.unattributed_calls == 1
