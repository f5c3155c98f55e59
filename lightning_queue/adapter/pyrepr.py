"""Read the Python reprs LiteLLM stores for list and dict attributes, without evaluating anything.

The repr is rewritten token by token into JSON (strings decoded, True/False/None mapped, tuples as
lists) and parsed with `json`; anything that is not a plain literal is refused with ValueError.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tokenize
from typing import Any

_NAMES = {"True": "true", "False": "false", "None": "null", "nan": "NaN", "inf": "Infinity"}
_OPS = {"[": "[", "]": "]", "{": "{", "}": "}", "(": "[", ")": "]", ":": ":", ",": ",", "-": "-"}
_NUMBER = re.compile(r"^\d+(\.\d+)?([eE][+-]?\d+)?$")
_SKIPPED = (tokenize.ENCODING, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT)


def _string(literal: str) -> str:
    prefix = re.match(r"^[A-Za-z]*", literal)
    letters = prefix.group(0).lower() if prefix else ""
    if letters not in ("", "u"):
        raise ValueError(f"string literal with prefix {letters!r} is not supported")
    body = literal[len(letters) :]
    quote = 3 if body[:3] in ('"""', "'''") else 1
    body = body[quote:-quote]
    # Escapes (\n, \', \xNN, \uNNNN ...) decode like Python's; other characters pass through unchanged.
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_python_literal(text: str) -> Any:
    """The value of a repr of nested lists, tuples, dicts, strings, numbers, booleans and None."""
    with contextlib.suppress(ValueError):
        return json.loads(text)  # most reprs of id lists are already JSON
    parts: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in _SKIPPED:
                continue
            if token.type == tokenize.STRING:
                parts.append(json.dumps(_string(token.string)))
            elif token.type == tokenize.NUMBER and _NUMBER.match(token.string):
                parts.append(token.string)
            elif token.type == tokenize.NAME and token.string in _NAMES:
                parts.append(_NAMES[token.string])
            elif token.type == tokenize.OP and token.string in _OPS:
                mapped = _OPS[token.string]
                if mapped in "]}" and parts and parts[-1] == ",":
                    parts.pop()  # (1,) and trailing commas are not JSON
                parts.append(mapped)
            else:
                raise ValueError(f"{token.string!r} is not part of a plain literal")
    except (tokenize.TokenError, SyntaxError) as exc:
        raise ValueError(f"not a complete Python literal: {exc}") from None
    try:
        return json.loads("".join(parts))
    except ValueError as exc:
        raise ValueError(f"not a plain literal (sets and objects are not supported): {exc}") from None
