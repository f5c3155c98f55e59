"""Where the store's Redis is: URL resolution, client settings, the fallback to the embedded server
(embedded.py), and waiting for a shared Redis that is not up yet."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..resilience import Backoff

# resolve_url's fallback; tests replace it here.
from .embedded import start_embedded_server as start_embedded_server

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_URL = "redis://127.0.0.1:6379/0"
_VALID_SCHEMES = ("redis", "rediss", "unix")


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable Redis URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{netloc}"))


def check_url(url: str) -> str:
    if not isinstance(url, str) or not url:
        raise ValueError(f"Redis URL must be a non-empty string, got {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL {redact(url)!r}: {exc}") from exc
    if parts.scheme not in _VALID_SCHEMES:
        raise ValueError(f"malformed Redis URL {redact(url)!r}: scheme must be one of {', '.join(_VALID_SCHEMES)}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"malformed Redis URL {redact(url)!r}: no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"malformed Redis URL {redact(url)!r}: port {port} out of range")
    return url


# Where a URL not given explicitly is looked for, in this order.
URL_ENV = ("LQ_REDIS_URL", "REDIS_URL")


def configured_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The one resolution order: explicit URL, then each of `URL_ENV`; None if none is set. Checked."""
    env = os.environ if environ is None else environ
    for candidate in (url, *(env.get(name) for name in URL_ENV)):
        if candidate:
            return check_url(candidate)
    return None


def _answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def resolve_url(url: str | None = None, *, allow_embedded: bool = True) -> str:
    """Explicit URL, then LQ_REDIS_URL, REDIS_URL, a Redis at 127.0.0.1:6379, else the embedded server."""
    if (configured := configured_url(url)) is not None:
        return configured
    if _answers("127.0.0.1", 6379):
        return DEFAULT_LOCAL_URL
    if not allow_embedded:
        raise ConnectionError(
            "no Redis URL given (argument, LQ_REDIS_URL or REDIS_URL) and nothing answers at 127.0.0.1:6379"
        )
    return start_embedded_server()


class TransientRetry(Retry):
    """Retry lost connections and timeouts, but not bad credentials: those will not heal by waiting.

    redis-py makes its auth errors subclasses of ConnectionError, so they would be retried otherwise.
    """

    async def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        def retryable(error: Exception) -> bool:
            if isinstance(error, AuthenticationError | AuthorizationError):
                return False
            return bool(is_retryable(error)) if is_retryable is not None else True

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


# How the client retries a dropped connection: 0.1 s doubling to 2 s, six times (about 5 s in all).
CLIENT_RETRY = Backoff(first=0.1, cap=2.0)
CLIENT_RETRIES = 6
# Connections one event loop may open; past that, callers queue for a free one instead of failing.
MAX_CONNECTIONS = 512


def make_client(url: str, *, blocking: bool = False) -> aioredis.Redis:
    """A redis-py asyncio client that retries dropped connections with backoff instead of failing at once.

    Its pool waits for a free connection when all are busy: redis-py's default pool raises
    MaxConnectionsError at 100, which a worker with high concurrency or many waiters would hit.
    """
    retry = TransientRetry(CLIENT_RETRY.for_redis(), retries=CLIENT_RETRIES)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=None,
        decode_responses=False,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        socket_connect_timeout=5.0,
        # Blocking reads (XREAD/XREADGROUP BLOCK) must outlive their BLOCK; they use short slices.
        socket_timeout=None if blocking else 30.0,
        socket_keepalive=True,
        health_check_interval=15,
    )
    client = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


def resolve_shared_url(url: str | None = None) -> str:
    """The URL of a service that exists to share a bus (`lq worker`, `lq proxy`, `lq trainer`, `lq status`):
    explicit URL, `LQ_REDIS_URL`, `REDIS_URL`, else 127.0.0.1:6379 whether or not it answers yet.

    Never the embedded server: a private one would leave the service waiting where nobody else looks.
    """
    return configured_url(url) or DEFAULT_LOCAL_URL


def ping_error(url: str, timeout: float = 2.0) -> str | None:
    """None if the Redis at `url` answers PING; else why not, without the password. Bad credentials raise
    ConnectionError: waiting will not fix them."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        return None
    except (AuthenticationError, AuthorizationError) as exc:
        raise ConnectionError(f"the Redis at {redact(url)} refused our credentials: {exc}") from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except redis.ResponseError:
        return None  # it answered (e.g. an ACL user without PING): up, and the service reports the rest
    finally:
        client.close()


def wait_for_redis(url: str, *, who: str, first_delay: float = 0.5, max_delay: float = 15.0) -> None:
    """Block until the Redis at `url` answers, saying on stderr that `who` waits and retries (with backoff).

    Ctrl-C stops the wait (KeyboardInterrupt propagates); bad credentials raise ConnectionError at once.
    """
    backoff = Backoff(first_delay, max(first_delay, max_delay))
    waited = 0.0
    while (error := ping_error(url)) is not None:
        delay = backoff.next()
        print(
            f"{who}: no Redis answers at {redact(url)} ({error}); retrying in {delay:.1f} s "
            f"(waited {waited:.0f} s so far; start redis-server or pass --redis-url; Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(delay)
        waited += delay
    if waited:
        print(f"{who}: the Redis at {redact(url)} answers now", file=sys.stderr, flush=True)


C = TypeVar("C")


class PerLoop(Generic[C]):
    """One client per event loop (asyncio clients are loop-bound), made by `make` on first use.

    A forked child starts with none: what it inherited holds its parent's sockets, and using or
    closing them (even just unregistering them from the event loop's epoll, which parent and child
    share) corrupts the parent's replies. The child makes fresh clients if it uses the store.
    """

    def __init__(self, make: Callable[[], C]) -> None:
        self._make = make
        self._clients: weakref.WeakKeyDictionary[Any, C] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        _registries.add(self)

    def get(self) -> C:
        """The client of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = self._make()
                self._clients[loop] = client
            return client

    def pop(self) -> C | None:
        """Remove and return the client of the running loop (for the caller to close)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._clients.pop(loop, None)

    def _forget_inherited(self) -> None:
        # Kept referenced forever, never closed: freeing them would close the parent's connections.
        _inherited.append(list(self._clients.items()))
        self._clients = weakref.WeakKeyDictionary()
        # Another thread (a worker's lease thread) may have held the lock at the fork: it never lets go here.
        self._lock = threading.Lock()


_registries: weakref.WeakSet[PerLoop[Any]] = weakref.WeakSet()
_inherited: list[object] = []


def _after_fork_in_child() -> None:
    for registry in list(_registries):
        registry._forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)
