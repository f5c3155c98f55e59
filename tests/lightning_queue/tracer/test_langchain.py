"""`get_langchain_handler()` with the real LangChain (dev extra): runs become nested spans of the trace."""

from __future__ import annotations

import pytest

from lightning_queue.tracer import OtelTracer

runnables = pytest.importorskip("langchain_core.runnables")


async def test_a_chain_run_with_the_handler_is_recorded_as_nested_spans() -> None:
    tracer = OtelTracer()
    chain = runnables.RunnableLambda(lambda x: x + 1) | runnables.RunnableLambda(lambda y: y * 2)
    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        handler = tracer.get_langchain_handler()
        assert chain.invoke(1, config={"callbacks": [handler]}) == 4
        assert await chain.ainvoke(2, config={"callbacks": [handler]}) == 6
    spans = tracer.get_last_trace()
    roots = [s for s in spans if s.name == "langchain.chain.RunnableSequence"]
    assert [(r.attributes["langchain.inputs"], r.attributes["langchain.outputs"]) for r in roots] == [
        ("1", "4"),
        ("2", "6"),
    ]
    for root in roots:
        steps = [s for s in spans if s.parent_id == root.span_id]
        assert [s.name for s in steps] == ["langchain.chain.RunnableLambda"] * 2


async def test_a_failing_step_marks_its_span_as_an_error() -> None:
    tracer = OtelTracer()

    def boom(x: int) -> int:
        raise ValueError(f"bad input {x}")

    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        with pytest.raises(ValueError, match="bad input 3"):
            runnables.RunnableLambda(boom).invoke(3, config={"callbacks": [tracer.get_langchain_handler()]})
    [span] = tracer.get_last_trace()
    assert span.status.status_code == "ERROR" and span.events[0].name == "exception"
