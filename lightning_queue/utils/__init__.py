"""Helpers v0.3 scripts import from `agentlightning.utils` (`utils.otel`: span attribute conventions;
`utils.metrics`: counters and histograms on a Prometheus or console backend)."""
