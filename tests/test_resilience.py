"""The one backoff policy and the outage logger: delays, reset, jitter, redis-py's view, log lines."""

from __future__ import annotations

import logging

import pytest
from redis.backoff import ExponentialBackoff

from lightning_queue.resilience import Backoff, Outage


def test_backoff_doubles_from_first_to_cap_and_reset_starts_over() -> None:
    backoff = Backoff(first=0.5, cap=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.current == 3.0 and backoff.failures == 5
    backoff.reset()
    assert backoff.current == 0.0
    assert backoff.next() == 0.5


def test_backoff_grows_by_its_factor_and_never_overflows() -> None:
    backoff = Backoff(first=1.0, cap=100.0, factor=3.0)
    assert [backoff.next() for _ in range(4)] == [1.0, 3.0, 9.0, 27.0]
    assert backoff.delay(100_000) == 100.0


def test_jitter_only_shortens_delays() -> None:
    backoff = Backoff(first=1.0, cap=1.0, jitter=0.5)
    delays = [backoff.next() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": -1.0, "cap": 1.0}, "Backoff.first must be a non-negative number of seconds, got -1.0"),
        ({"first": 2.0, "cap": 1.0}, r"Backoff.cap \(1.0\) must be at least Backoff.first \(2.0\)"),
        ({"first": 1.0, "cap": 2.0, "factor": 0.5}, "Backoff.factor must be at least 1, got 0.5"),
        ({"first": 1.0, "cap": 2.0, "jitter": 2}, "Backoff.jitter must be between 0 and 1, got 2"),
    ],
)
def test_backoff_refuses_bad_values_naming_them(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_redis_py_sees_the_same_delays() -> None:
    ours = Backoff(first=0.1, cap=2.0).for_redis()
    theirs = ExponentialBackoff(cap=2.0, base=0.05)
    assert [ours.compute(n) for n in range(1, 10)] == [theirs.compute(n) for n in range(1, 10)]


def test_outage_warns_once_then_logs_the_recovery(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage("waiting", Backoff(first=0.2, cap=2.0))
    with caplog.at_level(logging.WARNING, logger="lightning_queue.resilience"):
        delays = [outage.failed(ConnectionError("refused")) for _ in range(3)]
        outage.over()
        outage.over()
    assert delays == [0.2, 0.4, 0.8]
    assert [r.getMessage() for r in caplog.records] == [
        "waiting: Redis unreachable (refused); retrying with backoff",
        "waiting: Redis answers again after 3 failed attempts",
    ]
    assert outage.failures == 0


def test_outage_never_waits_past_the_callers_deadline() -> None:
    outage = Outage("waiting", Backoff(first=1.0, cap=1.0))
    assert outage.failed(OSError("down"), remaining=0.25) == 0.25
    assert outage.failed(OSError("down"), remaining=-1.0) == 0.0
