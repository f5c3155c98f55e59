"""How long and how much the proxy's server gives each client: the defaults live here, once."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass, fields

# File descriptors kept free of client connections: Redis, upstreams, logs, the listening socket.
_RESERVED_FDS = 256


def default_max_connections() -> int:
    """Half the descriptors this process may open (the other half serves upstream and store connections)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, (soft - _RESERVED_FDS) // 2))


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what clients can hold of the proxy.

    header_timeout: seconds a new connection has to deliver its first request head; slower ones are closed.
    body_timeout: seconds a request body has to arrive in full once its head is in (else 408).
    idle_timeout: seconds a keep-alive connection may sit between requests (and deliver the next head).
    max_connections: client connections open at once; at the cap, the oldest connection without a
        request in progress is closed for the new one, and if every one is busy the new one gets 503.
    max_body_bytes_in_flight: bytes of request bodies being received at once (declared lengths; a
        chunked body counts as the largest allowed); over it, new calls get 503 at once.
    """

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 30.0
    max_connections: int = 0  # 0: default_max_connections()
    max_body_bytes_in_flight: int = 256 << 20

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ServerLimits.{name} must be a positive number of seconds, got {value!r}")
        for name in ("max_connections", "max_body_bytes_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ServerLimits.{name} must be a non-negative integer, got {value!r}")
        if self.max_connections == 0:
            object.__setattr__(self, "max_connections", default_max_connections())
        if self.max_body_bytes_in_flight == 0:
            raise ValueError("ServerLimits.max_body_bytes_in_flight must be positive")


LIMIT_NAMES = tuple(f.name for f in fields(ServerLimits))
