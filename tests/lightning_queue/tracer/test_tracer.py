"""The ambient tracer and the emitters, without a worker: what a trace collects, and hostile uses."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
import uuid
from typing import Any

import opentelemetry.trace as otel
import pytest

from lightning_queue import semconv
from lightning_queue.emitter import (
    emit_annotation,
    emit_exception,
    emit_message,
    emit_object,
    emit_reward,
    get_message_value,
    get_object_value,
    operation,
)
from lightning_queue.litagent import LitAgent
from lightning_queue.reward import get_reward_value
from lightning_queue.tracer import AgentOpsTracer, OtelTracer, get_active_tracer, get_last_trace
from lightning_queue.tracer.langchain import INSTALL_HINT
from lightning_queue.tracer.otel import CAPTURE_CONTENT_ENV


class Gate:
    """`await gate.wait()` returns once `parties` tasks wait (asyncio.Barrier is Python 3.11+)."""

    def __init__(self, parties: int) -> None:
        self.parties, self.count, self.opened = parties, 0, asyncio.Event()

    async def wait(self) -> None:
        self.count += 1
        if self.count % self.parties == 0:
            self.opened.set()
        await self.opened.wait()


async def test_a_trace_collects_otel_api_spans_and_emitted_spans_in_the_order_they_ended() -> None:
    tracer = OtelTracer()
    async with tracer.trace_context("t", rollout_id="ro-1", attempt_id="at-1"):
        with otel.get_tracer("my.agent").start_as_current_span("outer"):
            with otel.get_tracer("my.agent").start_as_current_span("inner"):
                emit_message("hello")
        emit_reward(0.5)
        inside = get_last_trace()
    spans = tracer.get_last_trace()
    assert [s.name for s in spans] == [semconv.SPAN_MESSAGE, "inner", "outer", semconv.SPAN_ANNOTATION]
    assert [s.name for s in inside] == [s.name for s in spans]
    assert {(s.rollout_id, s.attempt_id) for s in spans} == {("ro-1", "at-1")}
    by_name = {s.name: s for s in spans}
    assert by_name["inner"].parent_id == by_name["outer"].span_id
    assert get_message_value(by_name[semconv.SPAN_MESSAGE]) == "hello"
    assert get_reward_value(spans[-1]) == 0.5
    assert get_active_tracer() is None


async def test_concurrent_traces_on_one_loop_keep_their_own_spans() -> None:
    tracer = OtelTracer()
    both_inside = Gate(2)

    async def one(mark: str) -> list[str]:
        async with tracer.trace_context(rollout_id=mark, attempt_id="at"):
            await both_inside.wait()
            with otel.get_tracer("t").start_as_current_span(f"span-{mark}"):
                await asyncio.sleep(0.01)
                emit_object({"mark": mark})
            await both_inside.wait()
            return [s.name + ":" + str(get_object_value(s) or "") for s in tracer.get_last_trace()]

    a, b = await asyncio.gather(one("a"), one("b"))
    assert a == [f"{semconv.SPAN_OBJECT}:{{'mark': 'a'}}", "span-a:"]
    assert b == [f"{semconv.SPAN_OBJECT}:{{'mark': 'b'}}", "span-b:"]


async def test_spans_outside_any_trace_go_nowhere_and_emitting_there_warns_but_returns_the_span(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer = OtelTracer()
    with otel.get_tracer("t").start_as_current_span("before"):
        with caplog.at_level(logging.WARNING, logger="lightning_queue.emitter.spans"):
            core = emit_reward(2.0)
    assert get_reward_value(core) == 2.0
    assert "emit_reward outside a traced rollout" in caplog.text
    with pytest.raises(ValueError, match="needs an active tracer"):
        get_last_trace()
    async with tracer.trace_context():
        assert tracer.get_last_trace() == []


async def test_propagate_false_builds_the_span_without_recording_it() -> None:
    tracer = OtelTracer()
    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        core = emit_reward(1.0, propagate=False)
    assert get_reward_value(core) == 1.0
    assert tracer.get_last_trace() == []


async def test_traces_do_not_nest_and_ids_come_in_pairs() -> None:
    tracer = OtelTracer()
    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        with pytest.raises(RuntimeError, match="traces do not nest"):
            async with tracer.trace_context(rollout_id="r2", attempt_id="a2"):
                pass
    with pytest.raises(ValueError, match="both rollout_id and attempt_id"):
        async with tracer.trace_context(rollout_id="r"):
            pass


async def test_emitters_check_their_input_and_encode_what_they_record() -> None:
    tracer = OtelTracer()
    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        emit_annotation({"tags": ["x", "y"], "meta": {"step": 3}})
        emit_object(b"\x00\x01")
        emit_object(7)
        try:
            raise KeyError("boom")
        except KeyError as exc:
            emit_exception(exc, attributes={"where": "tool"})
        with pytest.raises(TypeError, match=r"span attribute 'meta\.bad' is a object"):
            emit_annotation({"meta": {"bad": object()}})
        with pytest.raises(TypeError, match="JSON-serialisable"):
            emit_object({1, 2})
        with pytest.raises(TypeError, match="a message is a str"):
            emit_message(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="needs an exception"):
            emit_exception("not one")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="primary_key"):
            emit_reward({"a": 1.0})
    annotation, raw, seven, error = tracer.get_last_trace()
    assert annotation.attributes == {"tags": ["x", "y"], "meta.step": 3}
    assert get_object_value(raw) == b"\x00\x01" and get_object_value(seven) == 7
    assert error.name == semconv.SPAN_EXCEPTION and error.attributes["exception.type"] == "KeyError"
    assert error.attributes["where"] == "tool"


async def test_operation_records_a_block_and_a_function_with_inputs_outputs_and_errors() -> None:
    tracer = OtelTracer()

    @operation
    def add(x: int, y: int) -> int:
        return x + y

    @operation(name="fails")
    async def fails() -> None:
        raise RuntimeError("nope")

    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        with operation(name="block", kind="plan") as op:
            op.set_input("question")
            op.set_output({"answer": 1})
        assert add(2, y=3) == 5
        with pytest.raises(RuntimeError, match="nope"):
            await fails()
    block, added, failed = tracer.get_last_trace()
    assert block.name == semconv.SPAN_OPERATION and block.attributes[semconv.OPERATION_NAME] == "block"
    assert block.attributes["kind"] == "plan"
    assert block.attributes[semconv.OPERATION_INPUT_PREFIX + "0"] == '"question"'
    assert block.attributes["agentlightning.operation.output"] == '{"answer": 1}'
    assert op.span().attributes[semconv.OPERATION_NAME] == "block"
    assert added.attributes[semconv.OPERATION_INPUT_PREFIX + "x"] == "2"
    assert added.attributes["agentlightning.operation.output"] == "5"
    assert failed.status.status_code == "ERROR" and failed.events[0].name == "exception"


def test_operation_outside_a_rollout_runs_the_block_and_records_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), operation(name="alone") as op:
        op.set_input(1)
    assert "outside a traced rollout" in caplog.text
    with pytest.raises(RuntimeError, match="no recorded span"):
        op.span()


def test_langchain_handler_without_langchain_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.callbacks.base", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install langchain-core") as info:
        OtelTracer().get_langchain_handler()
    assert str(info.value) == INSTALL_HINT


async def test_langchain_handler_turns_runs_into_nested_spans_of_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for langchain_core's base class: the handler only subclasses it.
    base = types.ModuleType("langchain_core.callbacks.base")
    base.BaseCallbackHandler = type("BaseCallbackHandler", (), {})  # type: ignore[attr-defined]
    for name in ("langchain_core", "langchain_core.callbacks"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "langchain_core.callbacks.base", base)
    tracer = OtelTracer()
    chain, llm, tool = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with tracer.trace_context(rollout_id="r", attempt_id="a"):
        handler = tracer.get_langchain_handler()
        handler.on_chain_start({"name": "agent"}, {"q": "2+2"}, run_id=chain)
        handler.on_chat_model_start({"id": ["x", "ChatOpenAI"]}, [["hi"]], run_id=llm, parent_run_id=chain)
        handler.on_llm_end({"text": "4"}, run_id=llm)
        handler.on_tool_start({"name": "calc"}, "2+2", run_id=tool, parent_run_id=chain)
        handler.on_tool_error(ValueError("bad"), run_id=tool)
        handler.on_chain_end({"a": "4"}, run_id=chain)
    spans = {s.name: s for s in tracer.get_last_trace()}
    assert set(spans) == {"langchain.chain.agent", "langchain.llm.ChatOpenAI", "langchain.tool.calc"}
    root = spans["langchain.chain.agent"]
    assert spans["langchain.llm.ChatOpenAI"].parent_id == root.span_id
    assert spans["langchain.tool.calc"].status.status_code == "ERROR"
    assert root.attributes["langchain.outputs"] == '{"a": "4"}'


class Probe(LitAgent[Any]):
    def rollout(self, task: Any, resources: Any, rollout: Any) -> None:
        return None


async def test_litagent_tracer_is_the_active_one_and_a_clear_error_before_any() -> None:
    agent = Probe()
    with pytest.raises(RuntimeError, match="set by the worker running the agent"):
        agent.tracer  # noqa: B018
    tracer = OtelTracer()
    async with tracer.trace_context():
        assert agent.tracer is tracer


def test_agentops_tracer_instruments_openai_with_message_content_on_the_spans() -> None:
    tracer = AgentOpsTracer()
    tracer.init_worker(0)
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    assert OpenAIInstrumentor().is_instrumented_by_opentelemetry  # type: ignore[no-untyped-call]
    assert tracer.instrument_openai and not OtelTracer().instrument_openai
    import os

    assert os.environ[CAPTURE_CONTENT_ENV] == "SPAN_ONLY"


def test_lifespan_sets_up_and_tears_down_the_worker_id() -> None:
    tracer = OtelTracer()
    with tracer.lifespan() as inside:
        assert inside is tracer and tracer.worker_id == 0
    assert tracer.worker_id is None


def test_an_application_tracer_provider_is_reused_and_keeps_exporting() -> None:
    # A fresh process: the global provider can be set once per process.
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio
        import opentelemetry.trace as otel
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from lightning_queue.tracer import OtelTracer

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel.set_tracer_provider(provider)

        async def main():
            tracer = OtelTracer()
            async with tracer.trace_context(rollout_id="r", attempt_id="a"):
                with otel.get_tracer("app").start_as_current_span("work"):
                    pass
            print([s.name for s in tracer.get_last_trace()], [s.name for s in exporter.get_finished_spans()])

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "['work'] ['work']"
