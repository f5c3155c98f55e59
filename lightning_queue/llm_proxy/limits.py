"""How long and how much the proxy's server gives each client: the defaults live here, once."""

from __future__ import annotations

import resource

from pydantic import field_validator

from ..options import Settings, setting

# File descriptors kept free of client connections: Redis, upstreams, logs, the listening socket.
_RESERVED_FDS = 256


def default_max_connections() -> int:
    """Half the descriptors this process may open (the other half serves upstream and store connections)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, (soft - _RESERVED_FDS) // 2))


class ServerLimits(Settings):
    """Bounds on what clients can hold of the proxy (`lq proxy` derives its options from these fields).

    At `max_connections`, the oldest connection without a request in progress is closed for the new one,
    and if every one is busy the new one gets 503. `max_body_bytes_in_flight` counts declared lengths (a
    chunked body counts as the largest allowed); over it, new calls get 503 at once.
    """

    header_timeout: float = setting(
        10.0, help="Seconds a new connection has to send its first request head.", gt=0, allow_inf_nan=False
    )
    body_timeout: float = setting(
        60.0, help="Seconds a request body has to arrive in full (else 408).", gt=0, allow_inf_nan=False
    )
    idle_timeout: float = setting(
        30.0, help="Seconds a keep-alive connection may stay idle between requests.", gt=0, allow_inf_nan=False
    )
    max_connections: int = setting(
        0,
        help="Client connections open at once (0 = half the descriptor limit, at most 4096).",
        ge=0,
        strict=True,
        validate_default=True,
    )
    max_body_bytes_in_flight: int = setting(
        256 << 20,
        help="Request bodies being received at once, all connections together, in MB; over it, new calls get 503.",
        option="--max-inflight-body-mb",
        param="max_body_bytes_in_flight",
        scale=1 << 20,
        gt=0,
        strict=True,
    )

    @field_validator("max_connections")
    @classmethod
    def _default_connections(cls, value: int) -> int:
        # 0 means "as many as the descriptor limit allows", resolved here so every reader sees a number.
        return value or default_max_connections()


LIMIT_NAMES = tuple(ServerLimits.model_fields)
