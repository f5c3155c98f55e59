"""Benchmarks of lightning-queue (`python -m bench <scenario>`); see docs/benchmarks.md.

This package imports nothing at import time: `bench.workload` and `bench.al_store` also run under the
Agent-Lightning baseline's own virtualenv, which does not have lightning_queue installed.
"""
