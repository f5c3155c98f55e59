"""Scripted replies of the stand-in model, including the faults a test can ask for."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .tokens import encode, split_pieces


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(dict(self.arguments))


@dataclass(frozen=True)
class Reply:
    """What the stand-in answers to one request.

    Faults: `status` >= 400 answers an OpenAI-style error with `error` as message; `delay` waits before
    answering (to trip timeouts); `chunk_delay` waits between stream chunks; `die_after` drops the
    connection after that many stream chunks (0 = before any answer, also for non-streamed calls).
    """

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    status: int = 200
    error: str = "scripted failure"
    delay: float = 0.0
    chunk_delay: float = 0.0
    die_after: int | None = None


@dataclass(frozen=True)
class Piece:
    """One stream chunk: content text, or a slice of a tool call (`tool` is its position)."""

    text: str
    token_ids: tuple[int, ...]
    tool: int | None = None
    opens_tool: bool = False


def pieces_of(reply: Reply) -> list[Piece]:
    """The reply as tokens, in the order a stream sends them; non-streamed answers join the same list."""
    pieces = [Piece(text, (tid,)) for text, tid in zip(split_pieces(reply.content), encode(reply.content), strict=True)]
    for position, call in enumerate(reply.tool_calls):
        # The opening chunk names the tool; its ids stand for the made-up "<tool_call> name" tokens.
        pieces.append(Piece("", tuple(encode(f"<tool_call> {call.name}")), position, opens_tool=True))
        arguments = call.arguments_json()
        pieces += [
            Piece(text, (tid,), position) for text, tid in zip(split_pieces(arguments), encode(arguments), strict=True)
        ]
    return pieces


def echo_reply(body: Mapping[str, Any]) -> Reply:
    """The default answer: repeats the last user message (or the prompt), deterministically."""
    said = ""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            said = content if isinstance(content, str) else json.dumps(content)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        said = prompt
    elif isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        said = prompt[0]
    return Reply(content=f"You said: {said}")
