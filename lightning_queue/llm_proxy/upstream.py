"""The HTTP client side: one pooled aiohttp session that sends requests to upstream models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from .config import UpstreamModel, safe_url
from .errors import ProxyError

UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def upstream_failure(exc: BaseException, model: UpstreamModel) -> ProxyError:
    """Turn a transport failure into the status a client expects: 504 for timeouts, else 502."""
    where = f"upstream of model {model.name!r} at {safe_url(model.base_url)}"
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return ProxyError(504, f"{where} did not answer within {model.timeout:g} s", "upstream_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProxyError(502, f"{where} is unreachable: {exc.os_error.strerror or exc}", "upstream_unreachable")
    reason = str(exc) or type(exc).__name__
    return ProxyError(502, f"{where} failed: {reason}", "upstream_error")


class UpstreamClient:
    """Connections are pooled per upstream; `max_connections` bounds them all together."""

    def __init__(self, max_connections: int = 1024) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300)
        # The proxy forwards no cookies between clients.
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def post(
        self, model: UpstreamModel, path: str, body: dict[str, Any], *, stream: bool
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `body` to the model's `path`; transport failures become ProxyErrors (502/504)."""
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() must run before post()")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        if model.api_key:
            headers["Authorization"] = f"Bearer {model.api_key}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, model.timeout), sock_read=model.timeout)
        try:
            response = await self._session.post(
                model.url(path), data=json.dumps(body).encode(), headers=headers, timeout=timeout
            )
        except UPSTREAM_ERRORS as exc:
            raise upstream_failure(exc, model) from None
        # Only sending is wrapped: errors while the caller reads or writes elsewhere stay theirs.
        try:
            yield response
        finally:
            response.release()
