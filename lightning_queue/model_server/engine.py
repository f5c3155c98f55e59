"""The served weights: generation off the event loop, one token at a time, and swapping in new weights."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .detokenize import IncrementalText, decode_text
from .sampling import SampledToken, SamplingParams, sample_tokens
from .weights import LoadedModel, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Weights:
    """What one request runs on from start to end, even if new weights are loaded meanwhile."""

    loaded: LoadedModel
    version: int


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    sampling: SamplingParams
    stop: tuple[str, ...] = ()
    logprobs: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Delta:
    """One generated token: the text it made final, and its logprob when asked for."""

    text: str
    token_id: int
    logprob: TokenLogprob | None
    finish_reason: str | None


class _Generation:
    """The synchronous state of one request, advanced a token per call on the generation thread."""

    def __init__(self, loaded: LoadedModel, request: GenerationRequest) -> None:
        self._loaded = loaded
        self._request = request
        self._tokens = sample_tokens(loaded.model, request.prompt_ids, request.sampling)
        self._text = IncrementalText(loaded.tokenizer, request.stop)
        self._count = 0

    def step(self) -> Delta:
        token = next(self._tokens)
        self._count += 1
        text = self._text.add(token.token_id)
        finish_reason: str | None = None
        if token.token_id in self._loaded.eos_token_ids or self._text.stopped:
            finish_reason = "stop"
        elif self._count >= self._request.max_tokens:
            finish_reason = "length"
        if finish_reason is not None:
            text += self._text.flush()
            self._tokens.close()
        logprob = self._describe(token) if self._request.logprobs else None
        return Delta(text=text, token_id=token.token_id, logprob=logprob, finish_reason=finish_reason)

    def close(self) -> None:
        self._tokens.close()

    def _describe(self, token: SampledToken) -> TokenLogprob:
        tokenizer = self._loaded.tokenizer
        return TokenLogprob(
            token=decode_text(tokenizer, [token.token_id]),
            logprob=token.logprob,
            top=tuple((decode_text(tokenizer, [token_id]), logprob) for token_id, logprob in token.top),
        )


class Engine:
    """Owns the current weights. Generation runs on one worker thread, a token per task, so
    concurrent requests interleave instead of queueing behind a long one."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._weights = Weights(loaded=loaded, version=0)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lq-generate")
        self._load_lock = asyncio.Lock()

    @property
    def weights(self) -> Weights:
        return self._weights

    async def generate(self, weights: Weights, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        loop = asyncio.get_running_loop()
        generation = _Generation(weights.loaded, request)
        try:
            while True:
                delta = await loop.run_in_executor(self._executor, generation.step)
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            # Also reached when the client goes away mid-stream: free the KV cache now.
            await loop.run_in_executor(self._executor, generation.close)

    async def load(self, path: str | os.PathLike[str]) -> Weights:
        """Swap in the checkpoint at `path`; requests already running keep their weights."""
        async with self._load_lock:
            current = self._weights.loaded
            loaded = await asyncio.to_thread(load_model, path, name=current.name, tokenizer=current.tokenizer)
            self._weights = Weights(loaded=loaded, version=self._weights.version + 1)
            logger.info("serving %s version %d from %s", loaded.name, self._weights.version, loaded.path)
            return self._weights

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
