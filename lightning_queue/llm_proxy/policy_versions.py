"""The policy versions on a call's span: the namespace's when it was admitted and when it ended, its
attempt's, and the upstream's own weights version when the replies say it."""

from __future__ import annotations

import re
from typing import Any

from .. import semconv
from .spans import CallRecord

# `lq serve-model` puts its weights version in every reply and chunk.
_WEIGHTS_FINGERPRINT = re.compile(r"weights-v(\d+)")


def weights_version(fingerprint: Any) -> int | None:
    match = _WEIGHTS_FINGERPRINT.fullmatch(fingerprint) if isinstance(fingerprint, str) else None
    return int(match.group(1)) if match else None


def upstream_versions(call: CallRecord) -> list[int]:
    """Every weights version the upstream reported for the call, in order, each once."""
    fingerprints: list[Any] = list(call.fingerprints)
    if not fingerprints and isinstance(call.response, dict):
        fingerprints = [call.response.get("system_fingerprint")]
    versions: list[int] = []
    for fingerprint in fingerprints:
        version = weights_version(fingerprint)
        if version is not None and version not in versions:
            versions.append(version)
    return versions


def stamp_versions(call: CallRecord, version_at_end: int | None) -> None:
    """Put the call's versions into its span attributes, flagging a call that two versions may have answered."""
    extra = call.extra
    if call.policy_version is not None:
        extra[semconv.POLICY_VERSION] = call.policy_version
    if call.attempt_policy_version is not None:
        extra[semconv.ATTEMPT_POLICY_VERSION] = call.attempt_policy_version
    upstream = upstream_versions(call)
    if upstream:
        extra[semconv.UPSTREAM_WEIGHTS_VERSION] = upstream[0]
        if len(upstream) > 1:
            extra[semconv.UPSTREAM_WEIGHTS_VERSIONS] = upstream
    moved = call.policy_version is not None and version_at_end is not None and version_at_end != call.policy_version
    if moved:
        extra[semconv.POLICY_VERSION_AT_END] = version_at_end
    if call.policy_version is not None or upstream:
        extra[semconv.POLICY_VERSION_CHANGED] = moved or len(upstream) > 1
