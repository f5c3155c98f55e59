"""What the handlers of one running proxy share: models, store, upstream client, counters, secrets."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass

from ..store.base import LightningStore
from .attribution import AttemptDirectory
from .barrier import Barrier
from .batching import StoreWriter
from .body import THREAD_BYTES, BodyBytes
from .config import ModelTable
from .connections import ConnectionGate, LogLimiter
from .limits import ServerLimits
from .metrics import ProxyMetrics
from .policy_versions import stamp_versions
from .scrubbing import Scrubber
from .settings import default
from .spans import DEFAULT_SPAN_LIMIT, SPAN_OVERHEAD, CallRecord, build_span
from .upstream import UpstreamClient

logger = logging.getLogger(__name__)

# Log the first unattributed call and then one in this many, so a misconfigured agent cannot flood logs.
_UNATTRIBUTED_LOG_EVERY = 100


@dataclass
class ProxyStats:
    calls: int = 0
    recorded_spans: int = 0
    unattributed_calls: int = 0
    upstream_errors: int = 0
    span_write_errors: int = 0
    truncated_spans: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ProxyState:
    def __init__(
        self,
        models: ModelTable,
        store: LightningStore,
        upstream: UpstreamClient,
        stats: ProxyStats,
        auth_token: str | None = None,
        max_body_bytes: int = default("max_body_bytes"),
        limits: ServerLimits | None = None,
        allow_unattributed: bool = False,
        metrics: ProxyMetrics | None = None,
        pause_retry_after: float = default("pause_retry_after"),
        pause_poll: float = default("pause_poll"),
    ) -> None:
        self.models = models
        self.store = store
        self.directory = AttemptDirectory(store)
        self.writer = StoreWriter(store)
        self.barrier = Barrier(store, retry_after=pause_retry_after, interval=pause_poll)
        self.upstream = upstream
        self.stats = stats
        self.auth_token = auth_token
        self.max_body_bytes = max_body_bytes
        self.limits = limits or ServerLimits()
        self.allow_unattributed = allow_unattributed
        self.body_bytes = BodyBytes(self.limits.max_body_bytes_in_flight)
        self.gate: ConnectionGate | None = None
        # What one span may take in the store: calls that cannot fit are refused before forwarding.
        self.span_limit = int(getattr(store, "max_span_bytes", DEFAULT_SPAN_LIMIT))
        self.span_room = max(0, self.span_limit - SPAN_OVERHEAD)
        self._scrubber = Scrubber(models.api_keys())
        self.logs = LogLimiter()
        self.metrics = metrics or ProxyMetrics()
        self.metrics.serve(models.names, self.health)

    def scrub(self, data: bytes) -> bytes:
        """Upstream keys, raw or escaped, out of anything going back to a client or into a record."""
        return self._scrubber.bytes(data)

    def scrub_text(self, text: str) -> str:
        return self._scrubber.text(text)

    def health(self) -> dict[str, int]:
        counts = self.stats.as_dict()
        counts.update(self.barrier.health())
        if self.gate is not None:
            counts.update(
                open_connections=self.gate.open_connections,
                refused_connections=self.gate.refused,
                evicted_connections=self.gate.evicted,
                head_timeouts=self.gate.head_timeouts,
            )
        return counts

    def note_unattributed(self, path: str) -> None:
        self.stats.unattributed_calls += 1
        count = self.stats.unattributed_calls
        if count == 1 or count % _UNATTRIBUTED_LOG_EVERY == 0:
            logger.warning(
                "%d call(s) without the /rollout/<rid>/attempt/<aid> prefix (latest: %s) were forwarded but not "
                "recorded: point agents at proxy.as_resource(rollout_id, attempt_id) URLs",
                count,
                path,
            )

    async def record(self, call: CallRecord) -> None:
        stamp_versions(call, self.barrier.view.policy_version)
        if call.response_bytes >= THREAD_BYTES:
            span = await asyncio.to_thread(build_span, call, self.span_limit)
        else:
            span = build_span(call, self.span_limit)
        self.metrics.recorded(call)
        if span.attributes.get("lq.proxy.truncated"):
            self.stats.truncated_spans += 1
        try:
            await self.writer.spans.submit(span)
        except Exception as exc:  # a failing store must not fail the call; the loss is logged and counted
            self.stats.span_write_errors += 1
            skipped = self.logs.allow("span_write")
            if skipped is not None:
                logger.error(
                    "span of rollout %s attempt %s sequence %d was not stored: %s: %s (%d more lost since the last "
                    "report; /health counts them as span_write_errors)",
                    call.rollout_id,
                    call.attempt_id,
                    call.sequence_id,
                    type(exc).__name__,
                    self.scrub_text(str(exc))[:300],
                    skipped,
                )
        else:
            self.stats.recorded_spans += 1
