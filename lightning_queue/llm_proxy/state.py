"""What the handlers of one running proxy share: models, store, upstream client, counters, secrets."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from ..store.base import LightningStore
from .attribution import AttemptDirectory
from .batching import StoreWriter
from .config import ModelTable
from .spans import CallRecord, build_span
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
        max_body_bytes: int = 16 << 20,
    ) -> None:
        self.models = models
        self.store = store
        self.directory = AttemptDirectory(store)
        self.writer = StoreWriter(store)
        self.upstream = upstream
        self.stats = stats
        self.auth_token = auth_token
        self.max_body_bytes = max_body_bytes
        self._secrets = [key.encode() for key in models.api_keys()]

    def scrub(self, data: bytes) -> bytes:
        """Upstream keys out of anything going back to a client or into a record (some APIs echo them)."""
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, b"***")
        return data

    def scrub_text(self, text: str) -> str:
        return self.scrub(text.encode("utf-8", errors="replace")).decode("utf-8", errors="replace")

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
        span = build_span(call)
        try:
            await self.writer.spans.submit(span)
        except Exception as exc:  # a failing store must not fail the call; the loss is logged and counted
            self.stats.span_write_errors += 1
            logger.error(
                "span of rollout %s attempt %s sequence %d was not stored: %s: %s",
                call.rollout_id,
                call.attempt_id,
                call.sequence_id,
                type(exc).__name__,
                self.scrub_text(str(exc))[:300],
            )
        else:
            self.stats.recorded_spans += 1
