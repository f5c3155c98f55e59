"""`StoreServerSettings`: where `lq store-server` listens, how many processes, and its request limits."""

from __future__ import annotations

from ..options import Settings, setting
from ..store.protocol import TOKEN_ENV

DEFAULT_PORT = 4747  # Agent-Lightning's `agl store` port, so its users change nothing else
DEFAULT_MAX_BODY_BYTES = 32 << 20
DEFAULT_MAX_WAIT_SECONDS = 60.0


class StoreServerSettings(Settings):
    """One `lq store-server`: its address, processes and limits (the store comes from RedisSettings)."""

    host: str = setting("127.0.0.1", help="Address to listen on; 0.0.0.0 exposes the store to the network.")
    port: int = setting(DEFAULT_PORT, help="TCP port (Agent-Lightning's default).", ge=0, le=65535)
    workers: int = setting(1, help="Server processes sharing the port; they are stateless over Redis.", ge=1, le=64)
    token: str | None = setting(
        None,
        help=f"Require 'Authorization: Bearer TOKEN' on every route but health (env {TOKEN_ENV}).",
        envvar=TOKEN_ENV,
    )
    max_body_bytes: int = setting(
        DEFAULT_MAX_BODY_BYTES, help="Largest request body accepted (after decompression for OTLP).", ge=1024
    )
    max_wait_seconds: float = setting(
        DEFAULT_MAX_WAIT_SECONDS,
        help="Longest a waits/rollouts request blocks (a null timeout waits this long).",
        gt=0,
    )
