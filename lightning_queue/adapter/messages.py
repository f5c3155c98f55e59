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


class TraceToMessages(TraceAdapter[list[OpenAIMessages]]):
    """One `{messages, tools}` per span that records a chat call, in the order given.

    The messages are the prompt followed by the first completion as the assistant's answer, with its
    tool calls (from the span itself, or from `tool.*` attributes of its direct children).
    """

    def adapt(self, source: Sequence[Span]) -> list[OpenAIMessages]:
        conversations: list[OpenAIMessages] = []
        for span in source:
            attrs = span.attributes
            prompt = group_genai_dict(attrs, "gen_ai.prompt") or []
            completion = group_genai_dict(attrs, "gen_ai.completion") or []
            request = group_genai_dict(attrs, "gen_ai.request")
            response = group_genai_dict(attrs, "gen_ai.response")
            if not prompt and not completion:
                continue
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
            conversations.append(OpenAIMessages(messages=messages, tools=_tools(span, request)))
        return conversations
