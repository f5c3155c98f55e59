"""Server-sent events: cut a byte stream into events, and fold OpenAI chunks into one response.

The proxy forwards each event as soon as it is complete and folds a copy, so the span of a streamed
call holds the same content, tool calls and token ids as the span of a non-streamed one.
"""

from __future__ import annotations

import json
from typing import Any

_SEPARATORS = (b"\r\n\r\n", b"\n\n")
DONE = "[DONE]"


class EventSplitter:
    """Feed bytes, get back complete events (each with its terminating blank line)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            cut = -1
            for separator in _SEPARATORS:
                at = self._buffer.find(separator)
                if at >= 0 and (cut < 0 or at + len(separator) < cut):
                    cut = at + len(separator)
            if cut < 0:
                return events
            events.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def rest(self) -> bytes:
        """Whatever followed the last complete event (an unterminated final event)."""
        rest, self._buffer = self._buffer, b""
        return rest


def event_data(event: bytes) -> str | None:
    """The joined `data:` lines of one event, or None if it has none (comments, keep-alives)."""
    lines = [line for line in event.decode("utf-8", errors="replace").splitlines() if line.startswith("data:")]
    if not lines:
        return None
    return "\n".join(line[5:].removeprefix(" ") for line in lines)


def _int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


class _Choice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.token_ids: list[int] = []
        self.prompt_token_ids: list[int] | None = None
        self.saw_token_ids = False

    def add_tool_call_delta(self, delta: dict[str, Any]) -> None:
        position = delta.get("index", len(self.tool_calls))
        call = self.tool_calls.setdefault(position, {"id": None, "type": "function", "name": "", "arguments": ""})
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function") or {}
        call["name"] += function.get("name") or ""
        call["arguments"] += function.get("arguments") or ""

    def add(self, chunk_choice: dict[str, Any]) -> None:
        delta = chunk_choice.get("delta")
        if isinstance(delta, dict):
            self.role = delta.get("role") or self.role
            self.text.append(delta.get("content") or "")
            self.reasoning.append(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    self.add_tool_call_delta(call)
        elif isinstance(chunk_choice.get("text"), str):
            self.text.append(chunk_choice["text"])
        self.finish_reason = chunk_choice.get("finish_reason") or self.finish_reason
        ids = _int_list(chunk_choice.get("token_ids"))
        if ids is not None:
            self.saw_token_ids = True
            self.token_ids.extend(ids)
        prompt_ids = _int_list(chunk_choice.get("prompt_token_ids"))
        if prompt_ids is not None:
            self.prompt_token_ids = prompt_ids

    def as_chat(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role or "assistant", "content": "".join(self.text)}
        if any(self.reasoning):
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": c["type"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                for _, c in sorted(self.tool_calls.items())
            ]
        return {"index": self.index, "message": message, "finish_reason": self.finish_reason, **self._ids()}

    def as_completion(self) -> dict[str, Any]:
        return {"index": self.index, "text": "".join(self.text), "finish_reason": self.finish_reason, **self._ids()}

    def _ids(self) -> dict[str, Any]:
        ids: dict[str, Any] = {"token_ids": self.token_ids} if self.saw_token_ids else {}
        if self.prompt_token_ids is not None:
            ids["prompt_token_ids"] = self.prompt_token_ids
        return ids


class StreamAccumulator:
    """Folds the `data:` payloads of a chat or completions stream into the non-streamed response shape."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.done = False
        self.error: Any = None
        self.chunks = 0
        self._top: dict[str, Any] = {}
        # Every distinct system_fingerprint, in order: more than one means the upstream changed weights mid-stream.
        self.fingerprints: list[str] = []
        self._choices: dict[int, _Choice] = {}

    def add(self, data: str) -> None:
        if data.strip() == DONE:
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return  # not JSON: still forwarded to the client, just not part of the record
        if not isinstance(chunk, dict):
            return
        self.chunks += 1
        if "error" in chunk:
            self.error = chunk["error"]
        fingerprint = chunk.get("system_fingerprint")
        if isinstance(fingerprint, str) and fingerprint not in self.fingerprints:
            self.fingerprints.append(fingerprint)
        for key in ("id", "model", "created", "system_fingerprint", "usage"):
            if chunk.get(key) is not None:
                self._top[key] = chunk[key]
        prompt_ids = _int_list(chunk.get("prompt_token_ids"))
        if prompt_ids is not None:
            self._top["prompt_token_ids"] = prompt_ids
        for chunk_choice in chunk.get("choices") or []:
            if isinstance(chunk_choice, dict):
                index = chunk_choice.get("index", 0)
                self._choices.setdefault(index, _Choice(index)).add(chunk_choice)

    def result(self) -> dict[str, Any]:
        chat = self.kind == "chat"
        choices = [c.as_chat() if chat else c.as_completion() for _, c in sorted(self._choices.items())]
        return {**self._top, "object": "chat.completion" if chat else "text_completion", "choices": choices}
