"""Fake token ids: each word (with its leading whitespace) maps to a stable id, so tests can predict them."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

VOCAB_SIZE = 49_152
_FIRST_ID = 16  # ids below are kept for "special" tokens, like a real vocabulary
_PIECES = re.compile(r"\s*\S+|\s+")


def split_pieces(text: str) -> list[str]:
    """The text cut into tokens; joining them gives the text back."""
    return _PIECES.findall(text)


def token_id(piece: str) -> int:
    return _FIRST_ID + zlib.crc32(piece.encode("utf-8")) % (VOCAB_SIZE - _FIRST_ID)


def encode(text: str) -> list[int]:
    return [token_id(piece) for piece in split_pieces(text)]


def render_chat(messages: Sequence[Any]) -> str:
    """The prompt text a chat template would produce, in a fixed made-up format."""
    parts = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True)
        parts.append(f"<|{message.get('role', 'user')}|> {content}")
        for call in message.get("tool_calls") or []:
            parts.append(f"<|tool_call|> {json.dumps(call, sort_keys=True)}")
    parts.append("<|assistant|>")
    return "\n".join(parts)
