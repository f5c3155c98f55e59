"""The claim gate, caller side (issue 17): what a claimer does when the claim scripts refuse.

The refusal itself is atomic in the scripts (common.lua: claims paused, or no slot under the staleness
bound): a refused entry is *held*, pending under a consumer no worker has, and its rollout stays queued,
so nothing is lost; held entries are served first, oldest first, once the gate opens. A gated claimer
does not poll: it waits on the gate stream (XREAD BLOCK), which a resume, a version bump, a slot given
back or a new staleness setting write to, for at most its block time. While gated a worker so sends two
commands per wake-up or block time: the claim script and the XREAD.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .transitions import GateReply

logger = logging.getLogger(__name__)

# Gate states that make a claimer wait for a wake-up; 'held' only makes it serve held entries first.
GATED = frozenset({"paused", "full"})


@dataclass
class GateView:
    """What one claimer (consumer) last learnt of the gate, so it logs changes once, not every call."""

    state: str = ""
    gate_id: str = "0-0"
    said: str = field(default="", repr=False)

    @property
    def gated(self) -> bool:
        return self.state in GATED

    @property
    def serve_first(self) -> bool:
        return self.state != ""


def report(view: GateView, reply: GateReply, namespace: str, who: str) -> None:
    """Take in a claim reply: remember the gate's state and log what changed (once per change)."""
    view.state, view.gate_id = reply.state, reply.gate_id
    if reply.expired_holder:
        logger.warning(
            "%s: the claims pause of holder %r in namespace %r expired without a resume (its holder stopped "
            "renewing it: crashed or stalled); claims go on",
            who,
            reply.expired_holder,
            namespace,
        )
    if reply.failed_stale:
        logger.warning(
            "%s: failed %d rollouts pinned to resources more than max_staleness versions old (stale_policy 'fail'): %s",
            who,
            len(reply.failed_stale),
            ", ".join(reply.failed_stale[:20]),
        )
    said = reply.state if reply.state in GATED else ""
    if said != view.said:
        if said == "paused":
            logger.info("%s: claims are paused in namespace %r; waiting for the resume", who, namespace)
        elif said == "full":
            logger.info("%s: the staleness bound of namespace %r admits no more rollouts now; waiting", who, namespace)
        else:
            logger.info("%s: claims open again in namespace %r", who, namespace)
        view.said = said


async def wait(redis: Any, gate_key: str, gate_id: str, block_ms: int) -> None:
    """Block until something is written to the gate stream after `gate_id`, or `block_ms` passed."""
    started = time.monotonic()
    reply = await redis.xread({gate_key: gate_id}, count=1, block=max(1, block_ms))
    waited_ms = (time.monotonic() - started) * 1000
    if not reply and waited_ms < block_ms / 2:
        # An early empty answer (fakeredis may give one) must not turn the wait into a busy loop.
        await asyncio.sleep((block_ms - waited_ms) / 1000)
