"""The policy versions a span records (the proxy's `lq.policy.*` attributes), as triplet metadata."""

from __future__ import annotations

from typing import Any

from .. import semconv
from ..types import Span

# Span attribute -> triplet metadata key; a key is set only when its span has the attribute.
VERSION_METADATA: dict[str, str] = {
    semconv.POLICY_VERSION: "policy_version",
    semconv.ATTEMPT_POLICY_VERSION: "attempt_policy_version",
    semconv.POLICY_VERSION_CHANGED: "policy_version_changed",
    semconv.POLICY_VERSION_AT_END: "policy_version_at_end",
    semconv.UPSTREAM_WEIGHTS_VERSION: "upstream_weights_version",
    semconv.UPSTREAM_WEIGHTS_VERSIONS: "upstream_weights_versions",
}


def version_metadata(*spans: Span | None) -> dict[str, Any]:
    """The versions recorded by the first span that has each (a call seen by the proxy and the client
    shares one triplet; only the proxy's span carries versions)."""
    found: dict[str, Any] = {}
    for span in spans:
        if span is None:
            continue
        for attribute, key in VERSION_METADATA.items():
            value = span.attributes.get(attribute)
            if value is not None and key not in found:
                found[key] = value
    return found
