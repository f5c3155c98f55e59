"""`lq proxy`: serve the LLM proxy in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from ..cli import namespace_option, redis_url_option
from .config import UpstreamModel, load_config_file, parse_model_spec
from .proxy import LLMProxy

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _models(specs: tuple[str, ...], config: str | None) -> list[UpstreamModel]:
    models = [parse_model_spec(spec) for spec in specs]
    if config is not None:
        models += load_config_file(config)
    if not models:
        raise ValueError("no models: give --model NAME=URL (repeatable) or --config models.yaml")
    return models


async def _serve(proxy: LLMProxy) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = proxy.get_store()
    try:
        await proxy.start()
        names = sorted({m.name for m in proxy.model_list})
        click.echo(f"lq proxy: serving {', '.join(names)} at {proxy.endpoint}", err=False)
        click.echo(f"lq proxy: agents call {proxy.endpoint}/rollout/<rollout_id>/attempt/<attempt_id>/v1", err=False)
        sys.stdout.flush()
        await stop.wait()
    finally:
        if proxy.is_running():
            await proxy.stop()
        aclose = getattr(store, "aclose", None)
        if aclose is not None:
            await aclose()


@click.command("proxy")
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    metavar="NAME=URL[,opt=...]",
    help="A public model name and its upstream OpenAI base URL, with options model=UPSTREAM_NAME, "
    "key=API_KEY or key_env=ENV_VAR, token_ids (ask vLLM for token ids), timeout=SECONDS. Repeatable.",
)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="YAML file with a 'models' list.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (0.0.0.0 serves other machines).")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = a free one).")
@click.option(
    "--auth-token",
    envvar="LQ_PROXY_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer <token>' on every call (env LQ_PROXY_TOKEN).",
)
@click.option(
    "--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(min=0.001), help="Request size limit."
)
@redis_url_option
@namespace_option
def proxy_command(
    model_specs: tuple[str, ...],
    config: str | None,
    host: str,
    port: int,
    auth_token: str | None,
    max_body_mb: float,
    redis_url: str | None,
    namespace: str,
) -> None:
    """Serve an OpenAI-compatible proxy that stores every call as a span of its rollout attempt."""
    from ..store import RedisLightningStore
    from ..store.connection import resolve_shared_url, wait_for_redis

    try:
        models = _models(model_specs, config)
        # It records into the algorithm's Redis: never a private one; wait for the shared one instead.
        url = resolve_shared_url(redis_url)
        wait_for_redis(url, who="lq proxy")
        store = RedisLightningStore(url, namespace=namespace)
    except (ValueError, OSError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from exc
    if host not in _LOOPBACK and not auth_token:
        click.echo(
            f"lq proxy: warning: bound to {host} without --auth-token; anyone who reaches it can use the models",
            err=True,
        )
    proxy = LLMProxy(
        port=port,
        host=host,
        model_list=models,
        store=store,
        auth_token=auth_token,
        launch_mode="asyncio",
        max_body_bytes=int(max_body_mb * (1 << 20)),
    )
    try:
        asyncio.run(_serve(proxy))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from exc
