"""Relaying an upstream SSE stream: each complete event goes to the client at once, a copy is folded."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from .config import UpstreamModel
from .errors import ProxyError
from .spans import CallKind, CallRecord
from .sse import EventSplitter, StreamAccumulator, event_data
from .state import ProxyState
from .upstream import UPSTREAM_ERRORS, upstream_failure


class StreamRelay:
    """One streamed call: forwards events, folds them into the call record, stores the span once."""

    def __init__(
        self,
        state: ProxyState,
        call: CallRecord | None,
        upstream: UpstreamModel,
        response: aiohttp.ClientResponse,
        kind: CallKind,
    ) -> None:
        self.state = state
        self.call = call
        self.upstream = upstream
        self.response = response
        self.folded = StreamAccumulator(kind)
        self.failure: ProxyError | None = None
        self.client_gone = False
        self.recorded = False
        self.out = web.StreamResponse(status=response.status)

    async def run(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        self.out.headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers})
        try:
            await self.out.prepare(request)
        except ConnectionResetError:
            self.client_gone = True
        splitter = EventSplitter()
        while not self.client_gone:
            try:
                chunk = await self.response.content.readany()
            except UPSTREAM_ERRORS as exc:
                self.failure = upstream_failure(exc, self.upstream)
                break
            if not chunk:
                break
            if self.call is not None and self.call.first_chunk_time is None:
                self.call.first_chunk_time = time.time()
            for event in splitter.feed(chunk):
                await self._forward(event)
                if self.client_gone:
                    break
        tail = splitter.rest()
        if tail.strip() and not self.client_gone:
            await self._forward(tail + b"\n\n")
        if self.failure is not None:
            self.state.stats.upstream_errors += 1
            if not self.client_gone:
                # Status 200 is already sent; an error event makes OpenAI clients raise instead of returning short.
                await self._forward(self.failure.sse_event())
        await self._finish()
        if not self.client_gone:
            try:
                await self.out.write_eof()
            except ConnectionResetError:
                self.client_gone = True
        return self.out

    async def _forward(self, event: bytes) -> None:
        event = self.state.scrub(event)
        if self.call is not None:
            self.call.response_bytes += len(event)
        data = event_data(event)
        if data is not None:
            self.folded.add(data)
            if self.folded.done:
                await self._finish()
        try:
            await self.out.write(event)
        except ConnectionResetError:
            self.client_gone = True

    async def _finish(self) -> None:
        """Store the span; runs before `[DONE]` is forwarded, so it is stored by the time the call returns."""
        call = self.call
        if self.recorded or call is None:
            return
        self.recorded = True
        call.end_time = time.time()
        call.status_code = self.response.status
        call.response = self.folded.result()
        call.fingerprints = list(self.folded.fingerprints)
        if self.failure is not None:
            call.fail(self.failure.error_type, self.failure.message)
        elif self.folded.error is not None:
            call.fail("upstream_stream_error", f"upstream sent an error event: {self.folded.error}")
        elif self.client_gone:
            call.fail("client_disconnected", "the client closed the connection before the stream ended")
        await self.state.record(call)
