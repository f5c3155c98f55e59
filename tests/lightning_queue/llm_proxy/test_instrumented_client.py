"""An agent whose OpenAI client is instrumented and goes through the proxy: both record the call,
the conversation is read back once."""

from __future__ import annotations

from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.adapter import TraceToMessages
from lightning_queue.litagent import results
from lightning_queue.tracer import AgentOpsTracer
from lightning_queue.types import AttemptedRollout
from tests.support.proxy import MODEL


async def test_a_call_seen_by_the_proxy_and_the_instrumented_client_is_one_conversation(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    tracer = AgentOpsTracer()
    with tracer.attempt_trace(rollout_id=attempt.rollout_id, attempt_id=attempt.attempt.attempt_id) as trace:
        reply = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    await store.add_many_spans(await results.spans_for(store, attempt, results.AgentResult(), trace))

    spans = list(await store.query_spans(attempt.rollout_id))
    recorders = [s for s in spans if s.attributes.get("gen_ai.response.id") == reply.id]
    assert len(recorders) == 2  # the proxy's span and the client's
    [conversation] = TraceToMessages().adapt(spans)
    assert conversation["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "You said: hello"},
    ]
