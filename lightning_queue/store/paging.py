"""Pages of the store's sorted-set indexes in the contract's order, at O(log N + page) per query.

A listing's order is a sequence of segments, each the union of disjoint sorted sets read from one end.
When a segment's native Redis order (score, then member bytes) is the contract's order, the page is a
ZRANGE. When it is not (the contract breaks score ties by another key, e.g. rollouts with one end_time
by start_time), the page is widened to whole tie groups at its two ends and the caller sorts that window
exactly: the cost grows with the size of those tie groups, not with N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Ids read per command when a listing must walk a whole index (unindexable filters or sorts).
CHUNK = 1000


@dataclass(frozen=True)
class Segment:
    """Disjoint sorted sets listed as one, from the low end or (`reverse`) the high end.

    `exact` says Redis's own tie order in that direction is the contract's; else the window is widened.
    """

    keys: tuple[str, ...]
    reverse: bool = False
    exact: bool = True


@dataclass(frozen=True)
class Window:
    """Ids to read; the page is `ids` as they are (exact), or the window sorted exactly, then [skip:skip+take].

    `origins` gives, per id, the index in the segment's keys of the set it came from.
    """

    ids: list[str]
    exact: bool
    skip: int
    take: int
    origins: list[int]


async def counts(redis: Any, keys: Sequence[str]) -> list[int]:
    """ZCARD of each key, in one round trip."""
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(key)
        return [int(n) for n in await pipe.execute()]


async def page(redis: Any, segments: Sequence[Segment], *, limit: int, offset: int) -> tuple[int, list[Window]]:
    """The exact total of `segments` and the windows covering items [offset, offset + limit) (-1 = all)."""
    sizes = await counts(redis, [key for seg in segments for key in seg.keys])
    totals = []
    for seg in segments:
        totals.append(sum(sizes[: len(seg.keys)]))
        sizes = sizes[len(seg.keys) :]
    windows: list[Window] = []
    position, remaining = offset, limit
    for seg, size in zip(segments, totals, strict=True):
        if remaining == 0:
            break
        if position >= size:
            position -= size
            continue
        take = size - position if remaining == -1 else min(remaining, size - position)
        windows.append(await _window(redis, seg, position, take))
        position = 0
        if remaining != -1:
            remaining -= take
    return sum(totals), windows


def _decoded(entries: list[Any]) -> list[tuple[str, float]]:
    return [(m.decode(errors="replace"), float(score)) for m, score in entries]


async def _window(redis: Any, seg: Segment, start: int, take: int) -> Window:
    stop = start + take - 1
    async with redis.pipeline(transaction=False) as pipe:
        for key in seg.keys:
            # One set: its own ranks. Several: each one's first stop+1, merged (bounded by offset + limit).
            first = start if len(seg.keys) == 1 else 0
            pipe.zrange(key, first, stop, desc=seg.reverse, withscores=True)
        replies = await pipe.execute()
    entries = [(m, score, k) for k, reply in enumerate(replies) for m, score in _decoded(reply)]
    if len(seg.keys) > 1:
        entries.sort(key=lambda e: (e[1], e[0]), reverse=seg.reverse)
        entries = entries[start : stop + 1]
    if seg.exact or not entries:
        return Window([e[0] for e in entries], exact=True, skip=0, take=take, origins=[e[2] for e in entries])
    # Widen to whole tie groups: every member scored between the page's first and last score, and how
    # many come before the first score (those the window skips).
    first_score, last_score = entries[0][1], entries[-1][1]
    low, high = min(first_score, last_score), max(first_score, last_score)
    async with redis.pipeline(transaction=False) as pipe:
        for key in seg.keys:
            if seg.reverse:
                pipe.zcount(key, f"({high!r}", "+inf")
            else:
                pipe.zcount(key, "-inf", f"({low!r}")
            pipe.zrangebyscore(key, repr(low), repr(high))
        replies = await pipe.execute()
    before = sum(int(n) for n in replies[0::2])
    found = [(m.decode(errors="replace"), k) for k, reply in enumerate(replies[1::2]) for m in reply]
    # A write between the two reads can move the tie group; a page then may be short, never wrong-typed.
    skip = max(0, start - before)
    return Window([m for m, _ in found], exact=False, skip=skip, take=take, origins=[k for _, k in found])


async def all_ids(redis: Any, keys: Sequence[str]) -> list[str]:
    """Every member of `keys` in (score, member) order, read CHUNK at a time (never one giant reply)."""
    return [m for m, _ in await all_entries(redis, keys)]


async def all_entries(redis: Any, keys: Sequence[str]) -> list[tuple[str, int]]:
    """Every (member, index in `keys` of its set) in (score, member, set) order, read CHUNK at a time.

    Members only: a caller then reads the records chunk by chunk. The order is `page`'s for these sets.
    """
    scored: list[tuple[float, str, int]] = []
    for k, key in enumerate(keys):
        start = 0
        while True:
            chunk = await redis.zrange(key, start, start + CHUNK - 1, withscores=True)
            scored += [(score, m, k) for m, score in _decoded(chunk)]
            if len(chunk) < CHUNK:
                break
            start += CHUNK
    if len(keys) > 1:
        scored.sort()
    return [(m, k) for _, m, k in scored]
