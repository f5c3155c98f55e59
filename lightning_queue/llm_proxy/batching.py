"""Coalesce the store writes of concurrent calls: one round trip for all that arrived meanwhile.

Each call still waits for its own sequence id and its own span write, so nothing is acknowledged
early; under load the batches simply grow, and a lone call pays one extra loop turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from ..store.base import LightningStore
from ..types import Span

T = TypeVar("T")
R = TypeVar("R")

# One outcome per item: its result, or the exception that belongs to that item alone.
Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """`await submit(item)` runs `flush` over every item submitted while the previous flush ran."""

    def __init__(self, flush: Flush[T, R], max_batch: int = 256) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                outcomes: Sequence[R | BaseException] = await self._flush([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: every waiter sees the error
                outcomes = [exc] * len(batch)
            except BaseException:  # cancelled (shutdown): release the waiters, then stop
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


class StoreWriter:
    """Sequence ids and spans of concurrent calls, written in batches."""

    def __init__(self, store: LightningStore) -> None:
        self.store = store
        self.sequence_ids: Coalescer[tuple[str, str], int] = Coalescer(self._allocate)
        self.spans: Coalescer[Span, None] = Coalescer(self._add)

    async def _allocate(self, pairs: list[tuple[str, str]]) -> Sequence[int | BaseException]:
        return list(await self.store.get_many_span_sequence_ids(pairs))

    async def _add(self, spans: list[Span]) -> Sequence[BaseException | None]:
        try:
            await self.store.add_many_spans(spans)
            return [None] * len(spans)
        except Exception:
            if len(spans) == 1:
                raise
        # One bad span (too large, rollout gone) fails a batch; write them one by one to isolate it.
        outcomes: list[BaseException | None] = []
        for span in spans:
            try:
                await self.store.add_span(span)
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
