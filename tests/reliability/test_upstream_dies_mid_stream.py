"""The proxy's upstream dies mid-stream under a real worker: the agent's client gets an error, the proxy's
span records it, the attempt fails cleanly and the rollout is retried exactly as its config says."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lightning_queue import RedisLightningStore, RolloutConfig
from lightning_queue.llm_proxy import LLMProxy, UpstreamModel
from lightning_queue.testing import Reply, StandInModelServer
from lightning_queue.testing.server import StandInRequest
from tests.support.pools import PoolFactory
from tests.support.reliability_agents import ANSWER

UPSTREAM_KEY = "sk-upstream-reliability-SECRET"
DYING = "one two three four five"


def dies_on_first_attempts(request: StandInRequest) -> Reply:
    """Answer in full, except on a first attempt: then drop the connection after two streamed chunks."""
    said = str(request.body["messages"][-1]["content"])
    if "(attempt 1)" in said:
        return Reply(content=DYING, die_after=2)
    return Reply(content=f"fine: {said}")


@pytest.fixture
async def proxy(observer: RedisLightningStore) -> AsyncIterator[LLMProxy]:
    async with StandInModelServer(responder=dies_on_first_attempts, api_key=UPSTREAM_KEY) as upstream:
        model = UpstreamModel(name="policy", base_url=upstream.url, model=upstream.model, api_key=UPSTREAM_KEY)
        async with LLMProxy(model_list=[model], store=observer, launch_mode="asyncio") as served:
            await observer.add_resources({"llm": served.as_resource()})
            yield served


@pytest.mark.slow
async def test_upstream_dying_mid_stream_fails_the_attempt_and_the_retry_rule_decides(
    proxy: LLMProxy, observer: RedisLightningStore, start_pool: PoolFactory, redis_url: str
) -> None:
    retried = await observer.enqueue_rollout(
        {"say": "retried"}, config=RolloutConfig(max_attempts=2, retry_condition=["failed"])
    )
    not_retried = await observer.enqueue_rollout({"say": "not retried"})  # one attempt, no retry
    start_pool(redis_url, "tests.support.reliability_agents:streaming_chat", concurrency=2)

    done = {r.rollout_id: r for r in await observer.wait_for_rollouts(
        rollout_ids=[retried.rollout_id, not_retried.rollout_id], timeout=60
    )}  # fmt: skip

    assert {rid: r.status for rid, r in done.items()} == {
        retried.rollout_id: "succeeded",
        not_retried.rollout_id: "failed",
    }
    for rollout in (retried, not_retried):
        first = (await observer.query_attempts(rollout.rollout_id)).items[0]
        # The agent's client saw the stream break: the attempt failed with the client's error...
        assert first.status == "failed"
        error = (first.metadata or {})["error"]
        assert error["type"] == "APIError" and "upstream of model 'policy'" in error["message"], error
        spans = [s for s in (await observer.query_spans(rollout.rollout_id)).items if s.attempt_id == first.attempt_id]
        [llm_span] = [s for s in spans if s.name == "openai.chat.completion"]
        # ...and the proxy's span of that call says the upstream failed, keeping what it streamed.
        assert llm_span.status.status_code == "ERROR"
        assert llm_span.attributes["error.type"] == "upstream_error"
        assert llm_span.attributes["gen_ai.completion.0.content"] == "one two"
        assert [s.name for s in spans if s.name == "agentlightning.exception"] == ["agentlightning.exception"]
        assert not [s for s in spans if s.name == ANSWER]
    attempts = (await observer.query_attempts(retried.rollout_id)).items
    assert [a.status for a in attempts] == ["failed", "succeeded"]
    traced = (await observer.query_spans(retried.rollout_id, "latest")).items
    # The worker's tracer records the client's side of the call too (openai-v2), beside the proxy's span.
    assert [s.name for s in traced if s.name == "chat policy"] == ["chat policy"]
    latest = [s for s in traced if s.name != "chat policy"]
    assert [s.name for s in latest] == ["openai.chat.completion", ANSWER, "agentlightning.annotation"]
    assert latest[0].status.status_code == "OK"
    assert latest[1].attributes["text"] == "fine: retried (attempt 2)"
    assert len((await observer.query_attempts(not_retried.rollout_id)).items) == 1
    for rollout in (retried, not_retried):
        for span in (await observer.query_spans(rollout.rollout_id)).items:
            assert UPSTREAM_KEY not in span.model_dump_json()
    assert await observer.pending_entries() == 0
