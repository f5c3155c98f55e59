"""StandInModelServer: a deterministic OpenAI-compatible HTTP server for tests. It is a test double, not a model.

It answers chat and text completions (plain and streamed, with tool calls) from a script, and returns
vLLM-style token ids (`prompt_token_ids`, choice `token_ids`) when asked with `return_token_ids`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from .replies import Piece, Reply, ToolCall, echo_reply, pieces_of
from .tokens import encode, render_chat

TokenIdsMode = Literal["requested", "always", "never"]


@dataclass(frozen=True)
class StandInRequest:
    """A request as the stand-in received it (tests assert on what the proxy sent upstream)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


Responder = Callable[[StandInRequest], Reply | str]


def _error(status: int, message: str, error_type: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": error_type, "code": status}}, status=status)


class _Answer:
    """The pieces of one reply shaped as chat or completion choices."""

    def __init__(self, reply: Reply, body: dict[str, Any], chat: bool) -> None:
        pieces = pieces_of(reply)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        max_tokens = limit if isinstance(limit, int) else None
        cut = max_tokens is not None and sum(len(p.token_ids) for p in pieces) > max_tokens
        if max_tokens is not None and cut:
            kept: list[Piece] = []
            for piece in pieces:
                if sum(len(p.token_ids) for p in kept) + len(piece.token_ids) > max_tokens:
                    break
                kept.append(piece)
            pieces = kept
        self.pieces = pieces
        self.calls = reply.tool_calls
        self.chat = chat
        default = "tool_calls" if reply.tool_calls and chat else "stop"
        self.finish_reason = "length" if cut else (reply.finish_reason or default)
        n = body.get("n")
        self.n: int = n if isinstance(n, int) and n > 0 else 1

    @property
    def token_ids(self) -> list[int]:
        return [tid for piece in self.pieces for tid in piece.token_ids]

    def tool_call_id(self, position: int) -> str:
        return self.calls[position].id or f"call_{position}"

    def message(self) -> dict[str, Any]:
        text = "".join(p.text for p in self.pieces if p.tool is None)
        calls: dict[int, dict[str, Any]] = {}
        for piece in self.pieces:
            if piece.tool is None:
                continue
            call: ToolCall = self.calls[piece.tool]
            entry = calls.setdefault(
                piece.tool,
                {
                    "id": self.tool_call_id(piece.tool),
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                },
            )
            entry["function"]["arguments"] += piece.text
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = [calls[k] for k in sorted(calls)]
        return message

    def piece_delta(self, piece: Piece) -> dict[str, Any]:
        if not self.chat:
            return {"text": piece.text}
        if piece.tool is None:
            return {"delta": {"content": piece.text}}
        call: dict[str, Any] = {"index": piece.tool, "function": {"arguments": piece.text}}
        if piece.opens_tool:
            call.update(id=self.tool_call_id(piece.tool), type="function")
            call["function"]["name"] = self.calls[piece.tool].name
        return {"delta": {"tool_calls": [call]}}


class StandInModelServer:
    """Serve scripted answers on loopback: `async with StandInModelServer() as model: model.url`.

    Args:
        replies: answers used in order (a `Reply` or a plain string); after them, `responder` answers.
        responder: builds the answer from the request; default repeats the last user message.
        model: the model name the server reports.
        api_key: when set, requests must send `Authorization: Bearer <api_key>` (else 401).
        token_ids: "requested" (like vLLM: only with `return_token_ids: true`), "always" or "never".
        system_fingerprint: put in every reply and chunk when set (`lq serve-model` sends "weights-v<n>");
            read at each chunk, so a test can change it mid-stream to play a weights swap.
    """

    def __init__(
        self,
        replies: list[Reply | str] | None = None,
        *,
        responder: Responder | None = None,
        model: str = "stand-in-model",
        api_key: str | None = None,
        token_ids: TokenIdsMode = "requested",
        host: str = "127.0.0.1",
        port: int = 0,
        system_fingerprint: str | None = None,
    ) -> None:
        self.model = model
        self.system_fingerprint = system_fingerprint
        self.api_key = api_key
        self.token_ids_mode: TokenIdsMode = token_ids
        self.host = host
        self.port = port
        self.requests: list[StandInRequest] = []
        self._script: deque[Reply | str] = deque(replies or [])
        self._responder = responder
        self._tag = secrets.token_hex(4)
        self._count = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (ending in /v1)."""
        if self._runner is None:
            raise RuntimeError("StandInModelServer is not started")
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *replies: Reply | str) -> None:
        """Queue answers for the next requests."""
        self._script.extend(replies)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StandInModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- handlers --------------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "test"}]}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    def _next_reply(self, received: StandInRequest) -> Reply:
        if self._script:
            reply: Reply | str = self._script.popleft()
        elif self._responder is not None:
            reply = self._responder(received)
        else:
            reply = echo_reply(received.body)
        return Reply(content=reply) if isinstance(reply, str) else reply

    async def _answer(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "body must be a JSON object with a model")
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided", "authentication_error")
        received = StandInRequest(request.path, dict(request.headers), body)
        self.requests.append(received)
        reply = self._next_reply(received)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status >= 400:
            return _error(reply.status, reply.error, "scripted_error")
        if reply.die_after == 0:
            return self._die(request)
        self._count += 1
        answer = _Answer(reply, body, chat)
        prompt = render_chat(body.get("messages") or []) if chat else str(body.get("prompt", ""))
        envelope = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-standin-{self._tag}-{self._count}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model,
        }
        if self.system_fingerprint is not None:
            envelope["system_fingerprint"] = self.system_fingerprint
        with_ids = self.token_ids_mode == "always" or (
            self.token_ids_mode == "requested" and body.get("return_token_ids") is True
        )
        prompt_ids = encode(prompt)
        if body.get("stream") is True:
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            return await self._stream(request, reply, answer, envelope, prompt_ids, with_ids, include_usage)
        choice: dict[str, Any] = {"finish_reason": answer.finish_reason, "logprobs": None}
        choice.update({"message": answer.message()} if chat else {"text": answer.message()["content"] or ""})
        if with_ids:
            choice["token_ids"] = answer.token_ids
        response: dict[str, Any] = {
            **envelope,
            "choices": [{"index": i, **choice} for i in range(answer.n)],
            "usage": _usage(len(prompt_ids), len(answer.token_ids) * answer.n),
        }
        if with_ids:
            response["prompt_token_ids"] = prompt_ids
        return web.json_response(response)

    def _die(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable()  # never reaches the client: the connection is gone

    async def _stream(
        self,
        request: web.Request,
        reply: Reply,
        answer: _Answer,
        envelope: dict[str, Any],
        prompt_ids: list[int],
        ids: bool,
        include_usage: bool,
    ) -> web.StreamResponse:
        envelope = {**envelope, "object": "chat.completion.chunk" if answer.chat else "text_completion"}
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await out.prepare(request)

        async def send(choice: dict[str, Any], token_ids: tuple[int, ...] | None, **top: Any) -> None:
            if ids and token_ids is not None:
                choice = {**choice, "token_ids": list(token_ids)}
            choices = [{"index": i, "logprobs": None, "finish_reason": None, **choice} for i in range(answer.n)]
            chunk = {**envelope, "choices": choices, **top}
            if self.system_fingerprint is not None:
                chunk["system_fingerprint"] = self.system_fingerprint
            await out.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        opening = {"prompt_token_ids": prompt_ids} if ids else {}
        if answer.chat:
            await send({"delta": {"role": "assistant", "content": ""}}, (), **opening)
            opening = {}
        for sent, piece in enumerate(answer.pieces):
            if reply.die_after is not None and sent >= reply.die_after:
                return self._die(request)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await send(answer.piece_delta(piece), piece.token_ids, **opening)
            opening = {}
        final: dict[str, Any] = {"delta": {}} if answer.chat else {"text": ""}
        await send({**final, "finish_reason": answer.finish_reason}, (), **opening)
        if include_usage:
            usage = _usage(len(prompt_ids), len(answer.token_ids) * answer.n)
            await out.write(b"data: " + json.dumps({**envelope, "choices": [], "usage": usage}).encode() + b"\n\n")
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
