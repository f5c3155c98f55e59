"""How a worker's periodic Redis tasks fail: the errors they survive, logged once and on recovery."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

# What a background loop survives (logged, retried on its next tick).
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)


class Health:
    """Logs a periodic task's first failure as a warning, repeats at debug level, and the recovery."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.logger = logger
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        self.logger.log(level, "%s failed (%s); retrying every tick", self.what, exc)

    def ok(self) -> None:
        if self.failures:
            self.logger.info("%s works again after %d failures", self.what, self.failures)
            self.failures = 0
