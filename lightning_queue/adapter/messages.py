"""TraceToMessages: each recorded LLM call as an OpenAI chat conversation (prompt + answer) and its tools."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from ..types import Span
from .base import TraceAdapter


class OpenAIMessages(TypedDict):
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None


def _nest(node: dict[str, Any], path: list[str], value: Any) -> None:
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[path[-1]] = value


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if any(key.isdigit() for key in node):
        return [_listify(node[key]) for key in sorted((k for k in node if k.isdigit()), key=int)]
    return {key: _listify(value) for key, value in node.items()}


def group_genai_dict(attributes: Mapping[str, Any], prefix: str) -> dict[str, Any] | list[Any]:
    """Nest the dotted keys under `prefix.`; a level whose keys are indexes becomes a list."""
    root: dict[str, Any] = {}
    start = prefix + "."
    for key, value in attributes.items():
        if key.startswith(start):
            _nest(root, key[len(start) :].split("."), value)
    grouped = _listify(root)
    return grouped if isinstance(grouped, list | dict) else {}


def _tool_call(raw: Mapping[str, Any]) -> dict[str, Any]:
    # Flattened spans keep name/arguments at the call's level; OpenAI bodies nest them under "function".
    nested = raw.get("function")
    function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else raw
    return {
        "id": raw.get("id"),
        "type": raw.get("type") or "function",
        "function": {"name": function.get("name"), "arguments": function.get("arguments")},
    }


def _prompt_message(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"a gen_ai.prompt entry must be a mapping, got {type(entry).__name__}")
    role = entry.get("role")
    if role == "assistant" and isinstance(entry.get("tool_calls"), list):
        calls = [_tool_call(c) for c in entry["tool_calls"] if isinstance(c, Mapping)]
        return {"role": "assistant", "content": entry.get("content"), "tool_calls": calls}
    if role == "tool":
        return {"role": "tool", "content": entry.get("content"), "tool_call_id": entry.get("tool_call_id")}
    return {"role": role, "content": entry.get("content")}


def _child_tool_calls(span: Span, spans: Sequence[Span]) -> list[dict[str, Any]]:
    """Tool calls recorded as `tool.*` attributes of a span's direct children (client-side tracers)."""
    calls = []
    for child in spans:
        attrs = child.attributes
        if child.parent_id == span.span_id and "tool.name" in attrs:
            calls.append(
                {
                    "id": attrs.get("tool.call.id"),
                    "type": attrs.get("tool.call.type") or "function",
                    "function": {"name": attrs["tool.name"], "arguments": attrs.get("tool.parameters")},
                }
            )
    return calls


def _json_or_text(value: Any) -> Any:
    """Tool parameters are stored as JSON text; text that is not JSON is kept as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _tools(span: Span, request: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    functions = request.get("functions")
    if functions is None:
        functions = group_genai_dict(span.attributes, "llm.request.functions") or None
    if not isinstance(functions, list):
        return None
    tools = []
    for function in functions:
        if not isinstance(function, Mapping):
            continue
        tool = {
            "name": function.get("name"),
            "description": function.get("description"),
            "parameters": _json_or_text(function.get("parameters")),
        }
        tools.append({"type": "function", "function": {k: v for k, v in tool.items() if v is not None}})
    return tools or None


def _arguments_text(arguments: Any) -> Any:
    return arguments if isinstance(arguments, str) or arguments is None else json.dumps(arguments)


def _semconv_message(entry: Any) -> dict[str, Any]:
    """One OpenTelemetry GenAI message (`{"role", "parts": [...]}`) as an OpenAI chat message."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("parts"), list):
        raise ValueError(f"a gen_ai.input/output message must be a mapping with a parts list, got {entry!r:.80}")
    texts, calls, responses = [], [], []
    for part in entry["parts"]:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            texts.append(str(part.get("content", "")))
        elif kind == "tool_call":
            function = {"name": part.get("name"), "arguments": _arguments_text(part.get("arguments"))}
            calls.append({"id": part.get("id"), "type": "function", "function": function})
        elif kind == "tool_call_response":
            responses.append(part)
    role = entry.get("role")
    if role == "tool" and responses:
        response = responses[0].get("response")
        content = response if isinstance(response, str) else json.dumps(response)
        return {"role": "tool", "content": content, "tool_call_id": responses[0].get("id")}
    message: dict[str, Any] = {"role": role, "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _semconv_conversation(span: Span) -> OpenAIMessages | None:
    """The conversation of a span in the OpenTelemetry GenAI conventions (`gen_ai.input.messages`, JSON
    text), as the openai-v2 instrumentation writes it; None for other spans."""
    attrs = span.attributes
    if "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs:
        return None
    try:
        inputs = json.loads(attrs.get("gen_ai.input.messages") or "[]")
        outputs = json.loads(attrs.get("gen_ai.output.messages") or "[]")
        definitions = json.loads(attrs.get("gen_ai.tool.definitions") or "null")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"span {span.span_id}: gen_ai.*.messages must be JSON text: {exc}") from exc
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError(f"span {span.span_id}: gen_ai.input.messages and gen_ai.output.messages must be lists")
    messages = [_semconv_message(m) for m in inputs]
    if outputs:
        messages.append(_semconv_message(outputs[0]))
    tools = [dict(d) for d in definitions if isinstance(d, Mapping)] if isinstance(definitions, list) else None
    return OpenAIMessages(messages=messages, tools=tools or None)


class TraceToMessages(TraceAdapter[list[OpenAIMessages]]):
    """One `{messages, tools}` per span that records a chat call, in the order given.

    The messages are the prompt followed by the first completion as the assistant's answer, with its
    tool calls (from the span itself, or from `tool.*` attributes of its direct children). Spans in
    the OpenTelemetry GenAI conventions (an agent's own OpenAI client, instrumented) are read too; a
    call recorded twice (by the proxy and by the client: same `gen_ai.response.id`) counts once.
    """

    def adapt(self, source: Sequence[Span]) -> list[OpenAIMessages]:
        conversations: list[OpenAIMessages] = []
        seen: set[str] = set()
        for span in source:
            response_id = span.attributes.get("gen_ai.response.id")
            conversation = self._conversation(span, source)
            if conversation is None:
                continue
            if isinstance(response_id, str):
                if response_id in seen:
                    continue
                seen.add(response_id)
            conversations.append(conversation)
        return conversations

    def _conversation(self, span: Span, source: Sequence[Span]) -> OpenAIMessages | None:
        semconv = _semconv_conversation(span)
        if semconv is not None:
            return semconv
        attrs = span.attributes
        prompt = group_genai_dict(attrs, "gen_ai.prompt") or []
        completion = group_genai_dict(attrs, "gen_ai.completion") or []
        request = group_genai_dict(attrs, "gen_ai.request")
        response = group_genai_dict(attrs, "gen_ai.response")
        if not prompt and not completion:
            return None
        if not isinstance(prompt, list) or not isinstance(completion, list):
            raise ValueError(f"span {span.span_id}: gen_ai.prompt and gen_ai.completion must be indexed lists")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise ValueError(f"span {span.span_id}: gen_ai.request and gen_ai.response must be mappings")
        messages = [_prompt_message(entry) for entry in prompt]
        if completion:
            answer = completion[0] if isinstance(completion[0], Mapping) else {}
            message: dict[str, Any] = {"role": "assistant", "content": answer.get("content")}
            calls = [_tool_call(c) for c in answer.get("tool_calls") or [] if isinstance(c, Mapping)]
            calls = calls or _child_tool_calls(span, source)
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
        return OpenAIMessages(messages=messages, tools=_tools(span, request))
