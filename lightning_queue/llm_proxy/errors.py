"""Errors the proxy answers with, in the OpenAI error shape so clients show the message."""

from __future__ import annotations

import json

from aiohttp import web


class ProxyError(Exception):
    """An error the client should see: HTTP status, an OpenAI-style error type and a message."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        # Sent with the error (e.g. Retry-After of a 503 during a weight sync).
        self.headers: dict[str, str] = {}

    def payload(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.error_type, "code": self.status}}

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(self.payload(), status=self.status, headers={**self.headers, **(headers or {})})

    def sse_event(self) -> bytes:
        """The error as a stream event, for failures after the stream has started."""
        return b"data: " + json.dumps(self.payload()).encode() + b"\n\n"
