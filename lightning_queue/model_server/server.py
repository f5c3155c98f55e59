"""ModelServer: the OpenAI-compatible HTTP API over aiohttp, for one locally loaded causal LM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from aiohttp import web
from safetensors import SafetensorError

from .admin import AdminConfigError, OutsideRootError, authorized, check_token, is_loopback, resolve_inside
from .engine import Delta, Engine, GenerationRequest, Weights
from .prompts import chat_generation, completion_generation
from .protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    LoadRequest,
    StreamOptions,
    parse_json_object,
    parse_request,
)
from .responses import ResponseInfo, chat_role_chunk, delta_chunk, full_response, usage_chunk
from .weights import CheckpointError, LoadedModel, load_default_model, load_model

logger = logging.getLogger(__name__)

# stop() waits this long for requests in flight, then cancels them (aiohttp's default is 60 s).
_SHUTDOWN_GRACE_SECONDS = 5.0
# What a failed checkpoint load raises, from our checks and from transformers and safetensors.
_LOAD_ERRORS = (CheckpointError, OSError, ValueError, RuntimeError, KeyError, SafetensorError)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def default_threads() -> int:
    """Torch threads for generation. Two roughly double a 135M model's speed on an idle 2-core machine; on a
    machine busy with workers, one is steadier (threads that wait on each other stall)."""
    return min(2, os.cpu_count() or 1)


class ModelServer:
    """Serve `model` (a LoadedModel, a `save_pretrained` directory, or None for SmolLM2) on host:port.

    Port 0 picks a free port; `url` is the OpenAI base URL (ending in /v1) once `start()` returns.
    `torch.set_num_threads` is process-wide, so `threads` affects the whole process.

    `POST /v1/load` is refused unless `admin_token` is set; it then needs `Authorization: Bearer
    <admin_token>` and loads only directories inside `checkpoint_root` (required with a token).
    Without a token the server binds only a loopback address. `load()` from Python is not restricted.
    """

    def __init__(
        self,
        model: LoadedModel | str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int | None = None,
        aliases: Sequence[str] = ("default",),
        admin_token: str | None = None,
        checkpoint_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if admin_token is None and not is_loopback(host):
            raise AdminConfigError(
                f"refusing to serve on {host!r} without an admin token: anyone who reaches it could load "
                "checkpoints; give an admin token (--admin-token-file) or bind 127.0.0.1"
            )
        if admin_token is not None and checkpoint_root is None:
            raise AdminConfigError("an admin token needs a checkpoint root (--checkpoint-root) to load from")
        self._admin_token = check_token(admin_token) if admin_token is not None else None
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root is not None else None
        self._model = model
        self.host = host
        self.port = port
        self.threads = threads if threads is not None else default_threads()
        self.aliases = tuple(aliases)
        self._engine: Engine | None = None
        self._runner: web.AppRunner | None = None
        self._started = 0

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("ModelServer has no URL before start() returns")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def admin_enabled(self) -> bool:
        """True if `POST /v1/load` is served (with a token, inside `checkpoint_root`)."""
        return self._admin_token is not None and self.checkpoint_root is not None

    @property
    def weights(self) -> Weights:
        return self._require_engine().weights

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"ModelServer is already serving at {self.url}")
        torch.set_num_threads(self.threads)
        self._engine = Engine(await asyncio.to_thread(self._load_initial))
        self._started = int(time.time())
        app = web.Application(middlewares=[_json_errors])
        app.add_routes(
            [
                web.post("/v1/chat/completions", self._chat),
                web.post("/v1/completions", self._completions),
                web.get("/v1/models", self._models),
                web.post("/v1/load", self._load),
                web.get("/health", self._health),
            ]
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        # With port 0 the OS chose one; read it back.
        self.port = int(runner.addresses[0][1])
        weights = self._engine.weights
        logger.info("serving %s from %s at %s", weights.loaded.name, weights.loaded.path, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    async def load(self, path: str | os.PathLike[str]) -> Weights:
        """Swap in new weights without a restart, as `POST /v1/load` does."""
        return await self._require_engine().load(path)

    async def __aenter__(self) -> ModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _load_initial(self) -> LoadedModel:
        if isinstance(self._model, LoadedModel):
            return self._model
        if self._model is None:
            return load_default_model()
        return load_model(self._model)

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("ModelServer is not started; call and await start() first")
        return self._engine

    # --- handlers ---------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        chat = parse_request(ChatRequest, parse_json_object(await request.read()))
        weights = self._weights_for(chat.model)
        generation = chat_generation(weights, chat)
        info = ResponseInfo("chat", weights.loaded.name, weights.version, generation.prompt_ids)
        return await self._respond(request, weights, generation, info, chat.stream, chat.stream_options)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        completion = parse_request(CompletionRequest, parse_json_object(await request.read()))
        weights = self._weights_for(completion.model)
        generation = completion_generation(weights, completion)
        info = ResponseInfo("completion", weights.loaded.name, weights.version, generation.prompt_ids)
        return await self._respond(request, weights, generation, info, completion.stream, completion.stream_options)

    async def _respond(
        self,
        request: web.Request,
        weights: Weights,
        generation: GenerationRequest,
        info: ResponseInfo,
        stream: bool | None,
        stream_options: StreamOptions | None,
    ) -> web.StreamResponse:
        engine = self._require_engine()
        if not stream:
            async with contextlib.aclosing(engine.generate(weights, generation)) as deltas:
                collected = [delta async for delta in deltas]
            return web.json_response(full_response(info, collected, generation.logprobs))
        include_usage = bool(stream_options is not None and stream_options.include_usage)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            await _stream(response, engine, weights, generation, info, include_usage)
        except ConnectionResetError:
            logger.info("client left during %s; stopped generating", info.id)
        return response

    async def _models(self, request: web.Request) -> web.Response:
        weights = self._require_engine().weights
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": weights.loaded.name,
                        "object": "model",
                        "created": self._started,
                        "owned_by": "lightning-queue",
                        "root": str(weights.loaded.path),
                        "aliases": list(self.aliases),
                        "version": weights.version,
                        "max_model_len": weights.loaded.context_length,
                    }
                ],
            }
        )

    def _require_admin(self, request: web.Request) -> Path:
        """The checkpoint root, if the request may use an admin route; an ApiError otherwise."""
        if self._admin_token is None or self.checkpoint_root is None:
            raise ApiError(
                403,
                f"{request.path} is off: this server was started without an admin token (--admin-token-file)",
                code="admin_disabled",
            )
        if not authorized(request.headers.get("Authorization"), self._admin_token):
            raise ApiError(401, f"{request.path} needs 'Authorization: Bearer <admin token>'", code="unauthorized")
        return self.checkpoint_root

    async def _load(self, request: web.Request) -> web.Response:
        root = self._require_admin(request)
        load = parse_request(LoadRequest, parse_json_object(await request.read()))
        try:
            path = await asyncio.to_thread(resolve_inside, root, load.path)
        except OutsideRootError as error:
            raise ApiError(403, str(error), code="outside_checkpoint_root", param="path") from error
        started = time.perf_counter()
        try:
            weights = await self._require_engine().load(path)
        except _LOAD_ERRORS as error:
            logger.warning("loading %r failed: %s", load.path, error)
            raise ApiError(
                400, f"cannot load checkpoint {load.path!r}: {error}", code="invalid_checkpoint", param="path"
            ) from error
        return web.json_response(
            {
                "object": "model.load",
                "model": weights.loaded.name,
                "version": weights.version,
                "path": str(weights.loaded.path),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        weights = self._require_engine().weights
        return web.json_response({"status": "ok", "model": weights.loaded.name, "version": weights.version})

    def _weights_for(self, requested: str | None) -> Weights:
        weights = self._require_engine().weights
        served = weights.loaded.name
        if requested is not None and requested not in (served, *self.aliases):
            raise ApiError(
                404,
                f"model {requested!r} is not served here; use {served!r}"
                + (f" or one of {list(self.aliases)}" if self.aliases else ""),
                code="model_not_found",
                param="model",
            )
        return weights


async def _stream(
    response: web.StreamResponse,
    engine: Engine,
    weights: Weights,
    generation: GenerationRequest,
    info: ResponseInfo,
    include_usage: bool,
) -> None:
    if info.kind == "chat":
        await _send(response, chat_role_chunk(info))
    first = info.kind != "chat"
    offset = 0
    count = 0
    try:
        async with contextlib.aclosing(engine.generate(weights, generation)) as deltas:
            async for delta in deltas:
                await _send(response, delta_chunk(info, delta, offset, first))
                first = False
                count += 1
                offset += _token_length(delta)
    except ConnectionResetError:
        raise
    except Exception as error:
        # The status line is sent already; report the failure inside the stream instead.
        logger.exception("generation failed during %s", info.id)
        failure = ApiError(500, f"generation failed: {error!r}", code="internal_error", type_="server_error")
        await _send(response, failure.body())
    if include_usage:
        await _send(response, usage_chunk(info, count))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


async def _send(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")


def _token_length(delta: Delta) -> int:
    return len(delta.logprob.token) if delta.logprob is not None else 0


@web.middleware
async def _json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Every failure becomes an OpenAI error body, and the server goes on serving."""
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response(error.body(), status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        api_error = ApiError(
            error.status,
            f"{request.method} {request.path}: {error.reason}",
            code=error.reason.lower().replace(" ", "_"),
        )
        return web.json_response(api_error.body(), status=error.status)
    except Exception as error:
        logger.exception("%s %s failed", request.method, request.path)
        api_error = ApiError(500, f"internal error: {error!r}", code="internal_error", type_="server_error")
        return web.json_response(api_error.body(), status=500)
