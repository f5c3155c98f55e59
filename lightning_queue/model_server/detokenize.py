"""Generated token ids to text deltas, cut at the first stop string."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

# What a tokenizer decodes an incomplete UTF-8 sequence to; the next token may complete it.
_INCOMPLETE_CHARACTER = "\ufffd"


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
    text = tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
    if not isinstance(text, str):
        raise TypeError(f"{type(tokenizer).__name__}.decode returned {type(text).__name__}, expected str")
    return text


class IncrementalText:
    """Release text as tokens arrive, holding back what could still become a stop string."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(stop)
        self._ids: list[int] = []
        self._text = ""
        self._released = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """Everything released so far."""
        return self._text[: self._released]

    def add(self, token_id: int) -> str:
        """Take one more token and return the text that is now final."""
        if self.stopped:
            raise RuntimeError(f"token {token_id} added after the stop string was already generated")
        self._ids.append(token_id)
        # Decoding the whole sequence again is what keeps multi-token characters and spacing right.
        self._text = decode_text(self._tokenizer, self._ids, skip_special_tokens=True)
        stop_at = self._first_stop()
        if stop_at is not None:
            self.stopped = True
            return self._release_to(stop_at)
        return self._release_to(len(self._text) - self._held_back())

    def flush(self) -> str:
        """Release what was held back, once no more tokens will come."""
        return "" if self.stopped else self._release_to(len(self._text))

    def _release_to(self, end: int) -> str:
        delta = self._text[self._released : end]
        self._released = max(self._released, end)
        return delta

    def _first_stop(self) -> int | None:
        found = [index for stop in self._stop if (index := self._text.find(stop)) >= 0]
        return min(found) if found else None

    def _held_back(self) -> int:
        """Length of the longest tail that may still grow into a stop string or a full character."""
        text = self._text
        held = len(text) - len(text.rstrip(_INCOMPLETE_CHARACTER))
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text)), held, -1):
                if text.endswith(stop[:size]):
                    held = size
                    break
        return held
