"""OpenAI-shaped response bodies and stream chunks, plus the token ids a training proxy needs.

Beyond the OpenAI fields: `prompt_token_ids` at the top level (on the first chunk when streaming) and
`token_ids` on every choice, so a proxy can record exactly what the model saw and produced.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .engine import Delta, TokenLogprob

# OpenAI's stand-in for a probability too small to print.
_LOWEST_LOGPROB = -9999.0


@dataclass(frozen=True)
class ResponseInfo:
    """What every body and chunk of one response repeats."""

    kind: Literal["chat", "completion"]
    model: str
    version: int
    prompt_token_ids: list[int]
    unique: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return f"{'chatcmpl' if self.kind == 'chat' else 'cmpl'}-{self.unique}"

    def envelope(self, object_type: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_type,
            "created": self.created,
            "model": self.model,
            # The weights version, so a trainer can tell which checkpoint produced a sample.
            "system_fingerprint": f"weights-v{self.version}",
        }


def full_response(info: ResponseInfo, deltas: Sequence[Delta], logprobs: bool) -> dict[str, Any]:
    text = "".join(delta.text for delta in deltas)
    token_ids = [delta.token_id for delta in deltas]
    entries = [delta.logprob for delta in deltas if delta.logprob is not None]
    choice: dict[str, Any] = {"index": 0, "finish_reason": deltas[-1].finish_reason, "token_ids": token_ids}
    if info.kind == "chat":
        body = info.envelope("chat.completion")
        choice["message"] = {"role": "assistant", "content": text}
        choice["logprobs"] = chat_logprobs(entries) if logprobs else None
    else:
        body = info.envelope("text_completion")
        choice["text"] = text
        choice["logprobs"] = completion_logprobs(entries, 0) if logprobs else None
    body["choices"] = [choice]
    body["usage"] = usage(len(info.prompt_token_ids), len(token_ids))
    body["prompt_token_ids"] = info.prompt_token_ids
    return body


def chat_role_chunk(info: ResponseInfo) -> dict[str, Any]:
    """The chat stream's opening chunk: the role, and the prompt's token ids."""
    chunk = info.envelope("chat.completion.chunk")
    chunk["choices"] = [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
            "token_ids": [],
        }
    ]
    chunk["prompt_token_ids"] = info.prompt_token_ids
    return chunk


def delta_chunk(info: ResponseInfo, delta: Delta, text_offset: int, first: bool) -> dict[str, Any]:
    """One token of a stream. `text_offset` is where its text starts in the completion so far."""
    entries = [delta.logprob] if delta.logprob is not None else []
    choice: dict[str, Any] = {"index": 0, "finish_reason": delta.finish_reason, "token_ids": [delta.token_id]}
    if info.kind == "chat":
        chunk = info.envelope("chat.completion.chunk")
        choice["delta"] = {"content": delta.text}
        choice["logprobs"] = chat_logprobs(entries) if entries else None
    else:
        chunk = info.envelope("text_completion")
        choice["text"] = delta.text
        choice["logprobs"] = completion_logprobs(entries, text_offset) if entries else None
    chunk["choices"] = [choice]
    if first:
        chunk["prompt_token_ids"] = info.prompt_token_ids
    return chunk


def usage_chunk(info: ResponseInfo, completion_tokens: int) -> dict[str, Any]:
    chunk = info.envelope("chat.completion.chunk" if info.kind == "chat" else "text_completion")
    chunk["choices"] = []
    chunk["usage"] = usage(len(info.prompt_token_ids), completion_tokens)
    return chunk


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                **_token(entry.token, entry.logprob),
                "top_logprobs": [_token(token, logprob) for token, logprob in entry.top],
            }
            for entry in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: Sequence[TokenLogprob], start_offset: int) -> dict[str, Any]:
    offsets = []
    offset = start_offset
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [_finite(entry.logprob) for entry in entries],
        "top_logprobs": [{token: _finite(logprob) for token, logprob in entry.top} for entry in entries],
        "text_offset": offsets,
    }


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": _finite(logprob), "bytes": list(token.encode("utf-8"))}


def _finite(logprob: float) -> float:
    # JSON has no -Infinity.
    return max(logprob, _LOWEST_LOGPROB)
