"""The dashboard's JSON and pages over a real store: counts, paging, filters, escaping, the token, read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lightning_queue.dashboard import DashboardSettings, create_app, data
from lightning_queue.reward import emit_reward
from lightning_queue.types import SpanCoreFields

HOSTILE = "<script>alert('x')</script>"


async def client_for(store, **settings) -> TestClient[Any, Any]:
    client = TestClient(TestServer(create_app(store, DashboardSettings(**settings))))
    await client.start_server()
    return client


@pytest.fixture
async def client(store) -> AsyncIterator[TestClient[Any, Any]]:
    c = await client_for(store)
    yield c
    await c.close()


@pytest.mark.timeout(30)
async def test_overview_counts_rollouts_and_rewards(store, client):
    for i in range(3):
        await store.enqueue_rollout({"i": i}, mode="train")
    claimed = await store.dequeue_rollout(worker_id="w1")
    await store.add_otel_span(claimed.rollout_id, claimed.attempt.attempt_id, emit_reward(0.25, propagate=False))
    await store.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="succeeded")
    overview = await (await client.get("/api/overview")).json()
    assert overview["rollouts_by_status"]["queuing"] == 2
    assert overview["rollouts_by_status"]["succeeded"] == 1
    assert overview["queue_depth"] == 2
    assert overview["rewards"]["reward"] == [0.25]
    assert overview["rewards"]["rollout_id"] == [claimed.rollout_id]


@pytest.mark.timeout(30)
async def test_rollouts_page_and_filters(store, client):
    made = [await store.enqueue_rollout({"i": i}, mode="train" if i % 2 else "val") for i in range(7)]
    page = await (await client.get("/api/rollouts?limit=3&offset=0")).json()
    assert page["total"] == 7 and len(page["items"]) == 3
    assert page["items"][0]["rollout_id"] == made[-1].rollout_id  # newest first
    val = await (await client.get("/api/rollouts?mode=val&limit=10")).json()
    assert {r["rollout_id"] for r in val["items"]} == {r.rollout_id for r in made[::2]}
    assert val["total"] == 4
    none = await (await client.get("/api/rollouts?status=succeeded")).json()
    assert none["items"] == [] and none["total"] == 0


@pytest.mark.timeout(30)
async def test_a_mode_alone_is_paged_by_the_store_and_with_a_status_by_the_bounded_scan(store, client, monkeypatch):
    monkeypatch.setattr(data, "SCAN_BUDGET", 2)
    monkeypatch.setattr(data, "SCAN_CHUNK", 1)
    made = [await store.enqueue_rollout({"i": i}, mode="train" if i % 2 else "val") for i in range(7)]
    val = await (await client.get("/api/rollouts?mode=val&limit=2&offset=1")).json()
    assert [r["rollout_id"] for r in val["items"]] == [made[4].rollout_id, made[2].rollout_id]
    assert val["total"] == 4 and val["exact"] is True
    queued = await (await client.get("/api/rollouts?mode=val&status=queuing&limit=10")).json()
    assert queued["total"] is None and queued["exact"] is False  # the scan stopped at its budget


@pytest.mark.timeout(30)
async def test_bad_query_names_the_value(client):
    for query, named in [("status=bogus", "bogus"), ("mode=prod", "prod"), ("limit=0", "limit"), ("offset=x", "'x'")]:
        response = await client.get(f"/api/rollouts?{query}")
        assert response.status == 400, query
        assert named in (await response.json())["error"]


@pytest.mark.timeout(30)
async def test_rollout_spans_flag_missing_token_ids_and_escape_input(store, client):
    await store.enqueue_rollout({"prompt": HOSTILE})
    claimed = await store.dequeue_rollout(worker_id="w1")
    rid, aid = claimed.rollout_id, claimed.attempt.attempt_id
    llm = {"gen_ai.request.model": "policy", "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": HOSTILE}
    await store.add_otel_span(rid, aid, SpanCoreFields(name="openai.chat.completion", attributes=llm))
    with_ids = {**llm, "prompt_token_ids": [1, 2, 3], "response_token_ids": [4, 5]}
    await store.add_otel_span(rid, aid, SpanCoreFields(name="openai.chat.completion", attributes=with_ids))
    detail = await (await client.get(f"/api/rollouts/{rid}")).json()
    llm_spans = [s for s in detail["spans"] if s["llm"]]
    assert [s["missing_token_ids"] for s in llm_spans] == [True, False]
    assert llm_spans[1]["prompt_token_ids"] == 3 and llm_spans[1]["response_token_ids"] == 2
    assert llm_spans[0]["prompt"] == [{"role": "user", "content": HOSTILE}]
    assert detail["llm_spans_missing_token_ids"] == 1
    # The page shell puts the id in the HTML; a hostile id must come out escaped.
    page = await client.get("/rollouts/" + "%3Cscript%3Ex%3C%2Fscript%3E")
    html = await page.text()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    missing = await client.get("/api/rollouts/ro-nope")
    assert missing.status == 404


@pytest.mark.timeout(30)
async def test_read_only_and_token(store):
    c = await client_for(store, token="s3cret-token")
    try:
        assert (await c.get("/api/overview")).status == 401
        assert (await c.get("/api/overview?token=wrong-token")).status == 401
        assert (await c.get("/api/overview", headers={"Authorization": "Bearer s3cret-token"})).status == 200
        logged_in = await c.get("/?token=s3cret-token")
        assert logged_in.status == 200
        assert (await c.get("/api/workers")).status == 200  # the cookie set by ?token= carries on
        assert (await c.post("/api/overview", headers={"Authorization": "Bearer s3cret-token"})).status == 405
    finally:
        await c.close()


def test_remote_host_needs_a_token():
    with pytest.raises(ValueError, match=r"0\.0\.0\.0"):
        DashboardSettings(host="0.0.0.0").check_exposure()
    DashboardSettings(host="0.0.0.0", token="long-enough").check_exposure()
    DashboardSettings(host="::1").check_exposure()


@pytest.mark.timeout(30)
async def test_a_client_span_of_a_call_the_proxy_recorded_with_token_ids_is_not_flagged(store, client):
    await store.enqueue_rollout({"prompt": "hi"})
    claimed = await store.dequeue_rollout(worker_id="w1")
    rid, aid = claimed.rollout_id, claimed.attempt.attempt_id
    client_side = {"gen_ai.request.model": "policy", "gen_ai.operation.name": "chat"}
    # The worker's openai-v2 span and the proxy's span of one call share the response id.
    await store.add_otel_span(
        rid, aid, SpanCoreFields(name="chat policy", attributes={**client_side, "gen_ai.response.id": "r-1"})
    )
    proxied = {
        "gen_ai.request.model": "policy",
        "gen_ai.response.id": "r-1",
        "prompt_token_ids": [1],
        "response_token_ids": [2],
    }
    await store.add_otel_span(rid, aid, SpanCoreFields(name="openai.chat.completion", attributes=proxied))
    # A call only the client saw, with no token ids anywhere: still flagged.
    await store.add_otel_span(
        rid, aid, SpanCoreFields(name="chat policy", attributes={**client_side, "gen_ai.response.id": "r-2"})
    )
    detail = await (await client.get(f"/api/rollouts/{rid}")).json()
    flags = [(s["name"], s["missing_token_ids"]) for s in detail["spans"] if s["llm"]]
    assert flags == [("chat policy", False), ("openai.chat.completion", False), ("chat policy", True)]
    assert detail["llm_spans_missing_token_ids"] == 1
