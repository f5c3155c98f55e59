"""`str.format` with a ceiling on what it may build: a template naming `{x:>300000000}` must fail
before it allocates 300 M characters, not after."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

# A prompt past this is beyond any model's context window; a template that builds one is broken or hostile.
MAX_FORMATTED_CHARS = 4_000_000
_NUMBER = re.compile(r"\d+")


class _BoundedFormatter(string.Formatter):
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.built = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        # Widths and precisions are the numbers of a spec; refuse a big one before it is honoured.
        for number in _NUMBER.findall(format_spec):
            if len(number) > len(str(self.max_chars)) or int(number) > self.max_chars:
                raise ValueError(
                    f"format spec {format_spec!r} asks for {number} characters, over the limit of {self.max_chars}"
                )
        text = super().format_field(value, format_spec)
        self.built += len(text)
        if self.built > self.max_chars:
            raise ValueError(f"the formatted template is over the limit of {self.max_chars} characters")
        return text


def bounded_format(
    template: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, max_chars: int
) -> str:
    """`template.format(*args, **kwargs)`, refusing (ValueError) to build more than `max_chars` from fields."""
    formatter = _BoundedFormatter(max_chars)
    result = formatter.vformat(template, args, dict(kwargs or {}))
    if len(result) > max_chars:
        raise ValueError(f"the formatted template is {len(result)} characters, over the limit of {max_chars}")
    return result
