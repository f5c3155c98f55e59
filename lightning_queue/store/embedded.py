"""The embedded server (fakeredis over TCP, from the `embedded` extra) and everything the store must know
about how fakeredis differs from Redis. No other module names fakeredis."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import ResponseError

_lock = threading.Lock()
_server: Any = None  # the running fakeredis TcpFakeServer, at most one per process

# XREADGROUP's reply is {{stream, entries}} on Redis; fakeredis flattens it to {stream, entries}.
LUA_STREAM_ENTRIES = """\
local function stream_entries(reply)
  if not reply then return {} end
  if type(reply[1]) == 'string' then return reply[2] or {} end
  if reply[1] then return reply[1][2] or {} end
  return {}
end
"""


def start_embedded_server() -> str:
    """Start (once per process) fakeredis' TCP server on a free loopback port; return its URL.

    The URL is only returned: a caller that starts child processes passes it on to them.
    """
    global _server
    with _lock:
        if _server is None:
            try:
                from fakeredis import TcpFakeServer
            except ImportError:
                raise RuntimeError(
                    "no Redis reachable and the embedded server is not installed: "
                    "`pip install lightning-queue[embedded]`, or start redis-server and pass its URL"
                ) from None

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
            thread = threading.Thread(target=server.serve_forever, name="lq-embedded-redis", daemon=True)
            thread.start()
            _server = server
            print(
                f"lightning-queue: no Redis reachable; started an embedded Redis-compatible server at "
                f"redis://127.0.0.1:{port}/0 (for trying things on one machine; it keeps nothing after this "
                "process exits)",
                file=sys.stderr,
            )
        host, port = _server.server_address[:2]
        return f"redis://{host}:{port}/0"


def in_process_client_factory() -> Callable[[], Any]:
    """A fresh in-process fakeredis server (no socket, no thread); returns a factory of asyncio clients of it.

    Every client built by the factory sees the same data, whichever event loop or thread uses it.
    """
    try:
        import fakeredis
    except ImportError:
        raise RuntimeError(
            "InMemoryLightningStore runs the Redis store on an in-process fakeredis server, which is not "
            "installed: `pip install lightning-queue[embedded]`, or use RedisLightningStore with a Redis URL"
        ) from None
    server = fakeredis.FakeServer(server_type="redis")
    return lambda: fakeredis.FakeAsyncRedis(server=server)


def is_missing_group(exc: ResponseError) -> bool:
    """XREADGROUP found no consumer group: Redis says NOGROUP, fakeredis that the key must exist."""
    return "NOGROUP" in str(exc) or "requires the key to exist" in str(exc)


async def wait_out_early_reply(client: Any, queue: str, waited_ms: float, block_ms: int) -> bool:
    """After an empty XREADGROUP BLOCK reply: if it came well before its block time (fakeredis answers at
    once; Redis never does), wait the rest on XREAD so idle readers do not spin, and return True (the
    caller reads again, without BLOCK). An entry racing in before the XREAD costs at most one block."""
    if waited_ms >= block_ms / 2:
        return False
    await client.xread({queue: "$"}, count=1, block=max(1, int(block_ms - waited_ms)))
    return True
