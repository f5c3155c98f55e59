"""Upstream keys out of everything that leaves the proxy, in every spelling an upstream may echo them in.

An upstream that echoes a key may escape it: JSON writes `/` as `\\/` or any character as `\\u00XX`,
URLs write `%XX` (and `+` for a space). Each character of a key is matched in any of these forms, so a
key is found however an upstream mixed them; what matched becomes `***`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"


def _hex(code: int, width: int) -> bytes:
    # Hex digits in either case: encoders differ (\u002f, \u002F, %2f, %2F).
    return b"".join(
        b"[" + d.lower().encode() + d.upper().encode() + b"]" if d.isalpha() else d.encode()
        for d in f"{code:0{width}x}"
    )


def _character(char: str) -> bytes:
    code = ord(char)
    forms = [re.escape(char.encode("utf-8"))]
    if code <= 0xFFFF:
        forms.append(rb"\\u" + _hex(code, 4))
    if code < 0x80:
        forms.append(b"%" + _hex(code, 2))
    if char == "/":
        forms.append(rb"\\/")
    if char == " ":
        forms.append(rb"\+")
    return b"(?:" + b"|".join(forms) + b")"


class Scrubber:
    """Replaces the given secrets, raw or escaped, with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._raw = [s.encode("utf-8") for s in unique]
        self._pattern = re.compile(b"|".join(b"".join(_character(c) for c in s) for s in unique)) if unique else None

    def bytes(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        if b"\\" not in data and b"%" not in data and b"+" not in data:
            # No escape at all: plain replacement is much faster than the pattern.
            for secret in self._raw:
                if secret in data:
                    data = data.replace(secret, MASK)
            return data
        return self._pattern.sub(MASK, data)

    def text(self, text: str) -> str:
        return self.bytes(text.encode("utf-8", errors="replace")).decode("utf-8", errors="replace")
