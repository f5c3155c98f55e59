"""Waiting out failures: the one exponential backoff policy, and the outage logger built on it."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

from redis.backoff import AbstractBackoff

_logger = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Delays that grow by `factor` per failure from `first` up to `cap`; `reset()` after a success.

    `jitter` (0..1) shortens each delay by up to that fraction at random, so many clients that failed
    together do not retry together.
    """

    first: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0
    failures: int = field(default=0, init=False)
    current: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        for name in ("first", "cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff.{name} must be a non-negative number of seconds, got {value!r}")
        if self.cap < self.first:
            raise ValueError(f"Backoff.cap ({self.cap!r}) must be at least Backoff.first ({self.first!r})")
        if not self.factor >= 1:
            raise ValueError(f"Backoff.factor must be at least 1, got {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff.jitter must be between 0 and 1, got {self.jitter!r}")

    def delay(self, failures: int) -> float:
        """The delay after the `failures`-th failure in a row (1-based), before jitter."""
        if failures < 1:
            return 0.0
        try:
            return float(min(self.cap, self.first * self.factor ** (failures - 1)))
        except OverflowError:  # a long outage: far past the cap
            return float(self.cap)

    def next(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        self.failures += 1
        delay = self.delay(self.failures)
        if self.jitter:
            delay *= 1 - self.jitter * random.random()
        self.current = delay
        return delay

    def reset(self) -> None:
        self.failures = 0
        self.current = 0.0

    def for_redis(self) -> AbstractBackoff:
        """The same policy as redis-py's `Retry` wants it (its failure count starts at 1 too)."""
        return _RedisBackoff(Backoff(self.first, self.cap, self.factor, self.jitter))


class _RedisBackoff(AbstractBackoff):
    def __init__(self, policy: Backoff) -> None:
        self.policy = policy

    def compute(self, failures: int) -> float:
        delay = self.policy.delay(failures)
        return delay * (1 - self.policy.jitter * random.random()) if self.policy.jitter else delay


class Outage:
    """A loop waiting out an unreachable Redis: one warning when it starts, one line when it is over.

    `failed()` returns the backoff delay, cut to `remaining` seconds when the caller has a deadline.
    """

    def __init__(self, what: str, backoff: Backoff | None = None, logger: logging.Logger | None = None) -> None:
        self.what = what
        self.backoff = backoff or Backoff(first=0.2, cap=2.0)
        self.logger = logger or _logger

    @property
    def failures(self) -> int:
        return self.backoff.failures

    def failed(self, error: BaseException, remaining: float | None = None) -> float:
        delay = self.backoff.next()
        if self.failures == 1:
            self.logger.warning("%s: Redis unreachable (%s); retrying with backoff", self.what, error)
        return delay if remaining is None else max(0.0, min(delay, remaining))

    def over(self) -> None:
        if self.failures:
            self.logger.warning("%s: Redis answers again after %d failed attempts", self.what, self.failures)
        self.backoff.reset()
