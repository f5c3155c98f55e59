"""What the dashboard shows, read through the store's query API: JSON-ready dicts, never all rollouts at once.

Every listing asks the store for one page (`limit`/`offset`, a status filter, a sort); the overview's
history is sampled here every few seconds, and finished rollouts' rewards are cached (they do not change).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from .. import semconv
from ..reward import get_reward_value
from ..store import RedisLightningStore
from ..types import ROLLOUT_MODES, ROLLOUT_STATUSES, TERMINAL_STATUSES, Rollout, RolloutMode, RolloutStatus, Span

logger = logging.getLogger(__name__)

MAX_PAGE = 200
# A filter the store cannot apply (resources id; mode with a status) is applied to pages of this size, and a request
# reads at most SCAN_BUDGET rollouts for it, so a rare value on a huge run costs a bounded amount of work.
SCAN_CHUNK = 500
SCAN_BUDGET = 20_000
REWARD_POINTS = 300
REWARD_CACHE = 10_000
MAX_SPANS = 2_000
# An attribute value longer than this is cut in the rollout page's JSON (token id lists are counted instead).
MAX_TEXT = 20_000
LLM_SPAN_NAMES = frozenset({"openai.chat.completion", "openai.completion", "litellm_request", "raw_gen_ai_request"})
TOKEN_ID_KEYS = ("prompt_token_ids", "response_token_ids")
FINISHED = cast(list[RolloutStatus], sorted(TERMINAL_STATUSES))


def _page_args(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit!r}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset!r}")
    return limit, offset


def rollout_row(r: Rollout) -> dict[str, Any]:
    attempt = getattr(r, "attempt", None)
    return {
        "rollout_id": r.rollout_id,
        "status": r.status,
        "mode": r.mode,
        "resources_id": r.resources_id,
        "start_time": r.start_time,
        "end_time": r.end_time,
        "duration": None if r.end_time is None else r.end_time - r.start_time,
        "attempts": 0 if attempt is None else attempt.sequence_id,
        "worker_id": None if attempt is None else attempt.worker_id,
        "input": _preview(r.input),
    }


def _preview(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Sample:
    time: float
    queue_depth: int
    by_status: dict[str, int]


class Dashboard:
    """The read model behind the pages: one store, the sampled history and the reward cache."""

    def __init__(self, store: RedisLightningStore, *, history: int = 720) -> None:
        self.store = store
        self.samples: collections.deque[Sample] = collections.deque(maxlen=history)
        self._rewards: collections.OrderedDict[str, float | None] = collections.OrderedDict()

    # --- overview -------------------------------------------------------------------------------
    async def sample(self) -> Sample:
        stats = await self.store.statistics()
        sample = Sample(time.time(), await self.store.queue_depth(), dict(stats["rollouts_by_status"]))
        self.samples.append(sample)
        return sample

    async def sample_forever(self, period: float) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a Redis hiccup must not end the history; it shows as a gap
                logger.exception("dashboard: sampling the store failed")
            await asyncio.sleep(period)

    def history(self) -> dict[str, list[Any]]:
        """Columns for the charts; throughput is finished rollouts per second between two samples."""
        samples = list(self.samples)
        finished = [sum(s.by_status.get(k, 0) for k in TERMINAL_STATUSES) for s in samples]
        throughput: list[float | None] = [None]
        for i in range(1, len(samples)):
            dt = samples[i].time - samples[i - 1].time
            throughput.append(max(0, finished[i] - finished[i - 1]) / dt if dt > 0 else None)
        return {
            "time": [s.time for s in samples],
            "queue_depth": [s.queue_depth for s in samples],
            "running": [s.by_status.get("running", 0) + s.by_status.get("preparing", 0) for s in samples],
            "throughput": throughput if samples else [],
        }

    async def overview(self) -> dict[str, Any]:
        stats = await self.store.statistics()
        workers = (await self.store.query_workers()).items
        now = time.time()
        return {
            "namespace": self.store.namespace,
            "queue_depth": await self.store.queue_depth(),
            "in_flight": await self.store.pending_entries(),
            "total_rollouts": stats["total_rollouts"],
            "total_attempts": stats["total_attempts"],
            "total_spans": stats["total_spans"],
            "rollouts_by_status": stats["rollouts_by_status"],
            "workers_by_status": dict(collections.Counter(w.status for w in workers)),
            "workers_alive": sum(w.status != "unknown" for w in workers),
            "latest_resources": getattr(await self.store.get_latest_resources(), "resources_id", None),
            "history": self.history(),
            "rewards": await self.reward_curve(),
            "time": now,
        }

    async def reward_of(self, rollout_id: str) -> float | None:
        """The final reward of a finished rollout's latest attempt (cached), None if it emitted none."""
        if rollout_id in self._rewards:
            self._rewards.move_to_end(rollout_id)
            return self._rewards[rollout_id]
        spans = await self.store.query_spans(rollout_id, "latest", name=semconv.SPAN_ANNOTATION)
        reward = None
        for span in spans.items:
            value = get_reward_value(span)
            reward = value if value is not None else reward
        self._rewards[rollout_id] = reward
        if len(self._rewards) > REWARD_CACHE:
            self._rewards.popitem(last=False)
        return reward

    async def reward_curve(self, points: int = REWARD_POINTS) -> dict[str, list[Any]]:
        """The rewards of the last `points` finished rollouts, oldest first, against their end time."""
        page = await self.store.query_rollouts(status_in=FINISHED, sort_by="end_time", sort_order="desc", limit=points)
        finished = sorted(page.items, key=lambda r: r.end_time or 0.0)
        rewards = [await self.reward_of(r.rollout_id) for r in finished]
        kept = [(r, v) for r, v in zip(finished, rewards, strict=True) if v is not None]
        return {
            "time": [r.end_time for r, _ in kept],
            "reward": [v for _, v in kept],
            "rollout_id": [r.rollout_id for r, _ in kept],
        }

    # --- rollouts -------------------------------------------------------------------------------
    async def rollouts(
        self,
        *,
        status: Sequence[str] = (),
        mode: str | None = None,
        resources_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of rollouts, newest first. `total` is None when a mode/resources filter hit the scan budget."""
        limit, offset = _page_args(limit, offset)
        for s in status:
            if s not in ROLLOUT_STATUSES:
                raise ValueError(f"unknown rollout status {s!r}; expected one of {', '.join(ROLLOUT_STATUSES)}")
        if mode is not None and mode not in ROLLOUT_MODES:
            raise ValueError(f"unknown rollout mode {mode!r}; expected one of {', '.join(ROLLOUT_MODES)}")
        status_in = cast(list[RolloutStatus], list(status)) or None
        # The store pages a mode alone from its per-mode index; with a status too it would read every
        # rollout of those statuses, so that case stays with the bounded scan below.
        if resources_id is None and (mode is None or status_in is None):
            page = await self.store.query_rollouts(
                status_in=status_in,
                sort_by="start_time",
                sort_order="desc",
                limit=limit,
                offset=offset,
                mode=cast(RolloutMode | None, mode),
            )
            items, total, scanned_all = page.items, cast(int | None, page.total), True
        else:
            items, total, scanned_all = await self._scan(status_in, mode, resources_id, limit, offset)
        return {
            "items": [rollout_row(r) for r in items],
            "limit": limit,
            "offset": offset,
            "total": total,
            "exact": scanned_all,
        }

    async def _scan(
        self, status_in: list[RolloutStatus] | None, mode: str | None, resources_id: str | None, limit: int, offset: int
    ) -> tuple[list[Rollout], int | None, bool]:
        matched: list[Rollout] = []
        position = 0
        while position < SCAN_BUDGET:
            page = await self.store.query_rollouts(
                status_in=status_in, sort_by="start_time", sort_order="desc", limit=SCAN_CHUNK, offset=position
            )
            matched += [
                r
                for r in page.items
                if (mode is None or r.mode == mode) and (resources_id is None or r.resources_id == resources_id)
            ]
            position += len(page.items)
            if position >= page.total or not page.items:
                return matched[offset : offset + limit], len(matched), True
        return matched[offset : offset + limit], None, False

    async def rollout(self, rollout_id: str, attempt_id: str | None = None) -> dict[str, Any]:
        """A rollout with its attempts and the span tree of one attempt (the latest by default)."""
        found = await self.store.get_rollout_by_id(rollout_id)
        if found is None:
            raise KeyError(rollout_id)
        attempts = (await self.store.query_attempts(rollout_id)).items
        if attempt_id is None and attempts:
            attempt_id = attempts[-1].attempt_id
        if attempt_id is not None and attempt_id not in {a.attempt_id for a in attempts}:
            raise KeyError(attempt_id)
        spans_total, described = 0, list[dict[str, Any]]()
        if attempt_id is not None:
            spans = await self.store.query_spans(rollout_id, attempt_id, limit=MAX_SPANS)
            spans_total, described = spans.total, [describe_span(s) for s in spans.items]
            _clear_duplicated_calls(spans.items, described)
        rewards = [d["reward"] for d in described if d["reward"] is not None]
        return {
            "rollout": {
                **rollout_row(found),
                "input": _clip(found.input),
                "metadata": found.metadata,
                "config": found.config.model_dump(mode="json"),
            },
            "attempts": [a.model_dump(mode="json") for a in attempts],
            "attempt_id": attempt_id,
            "spans": described,
            "spans_total": spans_total,
            "reward": rewards[-1] if rewards else None,
            "llm_spans_missing_token_ids": sum(d["missing_token_ids"] for d in described),
        }

    # --- workers, resources -----------------------------------------------------------------------
    async def workers(self) -> dict[str, Any]:
        workers = (await self.store.query_workers(sort_by="worker_id")).items
        return {"items": [w.model_dump(mode="json") for w in workers], "time": time.time()}

    async def resources(self, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        limit, offset = _page_args(limit, offset)
        page = await self.store.query_resources(sort_by="update_time", sort_order="desc", limit=limit, offset=offset)
        latest = await self.store.get_latest_resources()
        items = []
        for r in page.items:
            items.append(
                {
                    "resources_id": r.resources_id,
                    "version": r.version,
                    "create_time": r.create_time,
                    "update_time": r.update_time,
                    "latest": latest is not None and latest.resources_id == r.resources_id,
                    # api keys stay out of the page: the dashboard may be shared with people who must not call the model
                    "resources": {name: _redacted(res.model_dump(mode="json")) for name, res in r.resources.items()},
                }
            )
        return {"items": items, "total": page.total, "limit": limit, "offset": offset}


def _redacted(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k == "api_key" and v else v) for k, v in resource.items()}


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + f"… ({len(value) - MAX_TEXT} more characters)"
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value) and len(value) > 32:
        return f"[{len(value)} ints: {value[:8]}…]"
    if isinstance(value, list):
        return [_clip(v) for v in value[:1000]]
    if isinstance(value, dict):
        return {str(k): _clip(v) for k, v in list(value.items())[:1000]}
    return value


def _messages(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """`gen_ai.prompt.<i>.role|content` (or completion) as a list, in index order."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, field = key[len(prefix) :].partition(".")
        if index.isdigit() and field in ("role", "content", "finish_reason", "tool_calls"):
            found.setdefault(int(index), {})[field] = _clip(value)
    return [found[i] for i in sorted(found)]


def is_llm_span(span: Span) -> bool:
    return span.name in LLM_SPAN_NAMES or "gen_ai.request.model" in span.attributes


def _clear_duplicated_calls(spans: list[Span], described: list[dict[str, Any]]) -> None:
    """A client's span of a call the proxy also recorded (same `gen_ai.response.id`) lacks no token ids:
    the proxy's span of that call has them, so it is not flagged."""
    pairs = list(zip(spans, described, strict=True))
    with_ids = {s.attributes.get("gen_ai.response.id") for s, d in pairs if d["llm"] and not d["missing_token_ids"]}
    for span, d in pairs:
        if d["missing_token_ids"] and span.attributes.get("gen_ai.response.id") in with_ids - {None}:
            d["missing_token_ids"] = False
            d["token_ids_on_proxy_span"] = True


def describe_span(span: Span) -> dict[str, Any]:
    """A span as the rollout page shows it: LLM messages and token-id counts pulled out, big values clipped."""
    attrs = span.attributes
    llm = is_llm_span(span)
    token_counts = {k: len(v) if isinstance(v, list) else None for k, v in attrs.items() if k in TOKEN_ID_KEYS}
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "sequence_id": span.sequence_id,
        "name": span.name,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": span.status.status_code,
        "status_description": span.status.description,
        "llm": llm,
        "model": attrs.get("gen_ai.request.model") if llm else None,
        "prompt": _messages(attrs, "gen_ai.prompt.") if llm else [],
        "completion": _messages(attrs, "gen_ai.completion.") if llm else [],
        "prompt_token_ids": token_counts.get("prompt_token_ids"),
        "response_token_ids": token_counts.get("response_token_ids"),
        # what RL training needs from an LLM call; an upstream not asked for token ids leaves them out
        "missing_token_ids": llm and not all(token_counts.get(k) for k in TOKEN_ID_KEYS),
        "reward": get_reward_value(span),
        "attributes": {k: _clip(v) for k, v in attrs.items()},
    }
