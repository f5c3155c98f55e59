"""A LangChain callback handler whose chain, model and tool runs become OpenTelemetry spans.

LangChain is optional: it is imported only when an agent asks for the handler. The model calls
themselves are usually OpenAI client calls underneath, which the openai-v2 instrumentation records
with their messages; this handler adds the chain and tool structure around them.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from uuid import UUID

import opentelemetry.trace as trace_api

INSTALL_HINT = (
    "get_langchain_handler() needs LangChain, which lightning-queue does not depend on: "
    "`pip install langchain-core` (or langchain) in the agent's environment"
)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _run_name(serialized: dict[str, Any] | None, kwargs: dict[str, Any], kind: str) -> str:
    name = kwargs.get("name") or (serialized or {}).get("name")
    if not name and serialized and serialized.get("id"):
        name = serialized["id"][-1]
    return f"langchain.{kind}.{name or 'unnamed'}"


def langchain_handler(tracer: trace_api.Tracer) -> Any:
    """A new `BaseCallbackHandler` recording into `tracer`; an ImportError saying what to install without LangChain."""
    try:
        from langchain_core.callbacks.base import BaseCallbackHandler
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    class LightningCallbackHandler(BaseCallbackHandler):  # type: ignore[misc,unused-ignore]
        """Each LangChain run is a span, a child of its parent run's span (or of the current span)."""

        def __init__(self) -> None:
            super().__init__()
            self._lock = threading.Lock()
            self._spans: dict[UUID, trace_api.Span] = {}

        def _start(self, name: str, run_id: UUID, parent_run_id: UUID | None, attributes: dict[str, Any]) -> None:
            with self._lock:
                parent = self._spans.get(parent_run_id) if parent_run_id is not None else None
            context = trace_api.set_span_in_context(parent) if parent is not None else None
            span = tracer.start_span(name, context=context, attributes=attributes)
            with self._lock:
                self._spans[run_id] = span

        def _end(self, run_id: UUID, attributes: dict[str, Any], error: BaseException | None = None) -> None:
            with self._lock:
                span = self._spans.pop(run_id, None)
            if span is None:
                return
            span.set_attributes(attributes)
            if error is not None:
                span.record_exception(error)
                span.set_status(trace_api.Status(trace_api.StatusCode.ERROR, str(error)))
            span.end()

        def on_chain_start(
            self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any
        ) -> None:
            self._start(_run_name(serialized, kw, "chain"), run_id, parent_run_id, {"langchain.inputs": _json(inputs)})

        def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
            self._end(run_id, {"langchain.outputs": _json(outputs)})

        def on_chain_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
            self._end(run_id, {}, error)

        def on_llm_start(
            self, serialized: Any, prompts: list[str], *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any
        ) -> None:
            self._start(_run_name(serialized, kw, "llm"), run_id, parent_run_id, {"langchain.prompts": _json(prompts)})

        def on_chat_model_start(
            self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any
        ) -> None:
            self._start(
                _run_name(serialized, kw, "llm"), run_id, parent_run_id, {"langchain.messages": _json(messages)}
            )

        def on_llm_end(self, response: Any, *, run_id: UUID, **kw: Any) -> None:
            generations = getattr(response, "generations", response)
            self._end(run_id, {"langchain.generations": _json(generations)})

        def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
            self._end(run_id, {}, error)

        def on_tool_start(
            self, serialized: Any, input_str: str, *, run_id: UUID, parent_run_id: UUID | None = None, **kw: Any
        ) -> None:
            self._start(_run_name(serialized, kw, "tool"), run_id, parent_run_id, {"langchain.tool.input": input_str})

        def on_tool_end(self, output: Any, *, run_id: UUID, **kw: Any) -> None:
            self._end(run_id, {"langchain.tool.output": _json(output)})

        def on_tool_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
            self._end(run_id, {}, error)

    return LightningCallbackHandler()
