"""Round trips to Redis counted in this process: one send per command, or per pipeline, on any connection."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection


class RoundTrips:
    """Counts sends while patched in; `reset()` starts again from 0."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real_send = AbstractConnection.send_packed_command

        async def counted(conn: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            self.count += 1
            await real_send(conn, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    def reset(self) -> None:
        self.count = 0
