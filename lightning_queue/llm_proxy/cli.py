"""`lq proxy`: serve the LLM proxy in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click
from pydantic import ValidationError

from ..options import describe, options
from ..store.settings import namespace_option, redis_url_option
from .config import UpstreamModel, load_config_file, parse_model_spec, read_secret_file, spec_has_inline_key
from .limits import ServerLimits
from .proxy import LLMProxy
from .settings import ProxySettings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _warn(message: str) -> None:
    click.echo(f"lq proxy: warning: {message}", err=True)


def _auth_token(token: str | None, token_file: str | None) -> str | None:
    """The token from --auth-token-file, or --auth-token / LQ_PROXY_AUTH_TOKEN (warned about on the command line)."""
    if token_file is not None:
        if token is not None:
            raise ValueError("give --auth-token-file or --auth-token (LQ_PROXY_AUTH_TOKEN), not both")
        return read_secret_file(token_file, "--auth-token-file")
    source = click.get_current_context().get_parameter_source("auth_token")
    if token and source is click.core.ParameterSource.COMMANDLINE:
        _warn(
            "--auth-token on the command line is readable by every user of this machine (ps, /proc/<pid>/cmdline); "
            "use --auth-token-file PATH or the environment variable LQ_PROXY_AUTH_TOKEN"
        )
    return token or None


def _models(specs: tuple[str, ...], config: str | None) -> list[UpstreamModel]:
    for spec in specs:
        if spec_has_inline_key(spec):
            _warn(
                f"--model {spec.split('=', 1)[0]}: key= on the command line is readable by every user of this "
                "machine (ps, /proc/<pid>/cmdline); use key_env=VAR or key_file=PATH"
            )
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
@options(ProxySettings, exclude=("limits",))
@options(ServerLimits)
@redis_url_option
@namespace_option
def proxy_command(redis_url: str | None, namespace: str, **fields: Any) -> None:
    """Serve an OpenAI-compatible proxy that stores every call as a span of its rollout attempt."""
    from ..store import RedisLightningStore
    from ..store.connection import resolve_shared_url, wait_for_redis

    try:
        settings = ProxySettings.from_options(**fields)
    except ValidationError as exc:
        raise click.UsageError(describe(exc)) from exc
    host, port = settings.host, settings.port
    try:
        auth_token = _auth_token(settings.auth_token, settings.auth_token_file)
        models = _models(settings.models, settings.config)
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
        max_body_bytes=settings.max_body_bytes,
        limits=settings.limits,
        allow_unattributed=settings.allow_unattributed,
        pause_retry_after=settings.pause_retry_after,
        pause_poll=settings.pause_poll,
    )
    try:
        asyncio.run(_serve(proxy))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from exc
