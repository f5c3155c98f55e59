"""`lq proxy`: serve the LLM proxy in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from ..store.settings import namespace_option, redis_url_option
from .config import UpstreamModel, load_config_file, parse_model_spec, read_secret_file, spec_has_inline_key
from .limits import ServerLimits
from .proxy import LLMProxy

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
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    metavar="NAME=URL[,opt=...]",
    help="A public model name and its upstream OpenAI base URL, with options model=UPSTREAM_NAME, "
    "key_env=ENV_VAR or key_file=PATH (or key=API_KEY, visible to other users), token_ids (ask vLLM for token "
    "ids), timeout=SECONDS. Repeatable.",
)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="YAML file with a 'models' list.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (0.0.0.0 serves other machines).")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = a free one).")
@click.option(
    "--auth-token",
    envvar=["LQ_PROXY_AUTH_TOKEN", "LQ_PROXY_TOKEN"],
    default=None,
    help="Require 'Authorization: Bearer <token>' on every call (env LQ_PROXY_AUTH_TOKEN, or LQ_PROXY_TOKEN); "
    "prefer the environment or --auth-token-file: arguments are visible to other users.",
)
@click.option(
    "--auth-token-file",
    envvar="LQ_PROXY_AUTH_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the bearer token from this file (env LQ_PROXY_AUTH_TOKEN_FILE).",
)
@click.option(
    "--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(min=0.001), help="Request size limit."
)
@click.option(
    "--allow-unattributed",
    is_flag=True,
    help="Serve calls without the /rollout/<rid>/attempt/<aid> prefix (not recorded); by default they get 404.",
)
@click.option(
    "--header-timeout",
    default=ServerLimits.header_timeout,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a new connection has to send its first request head.",
)
@click.option(
    "--body-timeout",
    default=ServerLimits.body_timeout,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request body has to arrive in full (else 408).",
)
@click.option(
    "--idle-timeout",
    default=ServerLimits.idle_timeout,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a keep-alive connection may stay idle between requests.",
)
@click.option(
    "--max-connections",
    default=ServerLimits.max_connections,
    type=click.IntRange(min=0),
    help="Client connections open at once (default: half the descriptor limit, at most 4096).",
)
@click.option(
    "--max-inflight-body-mb",
    default=ServerLimits.max_body_bytes_in_flight / (1 << 20),
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Request bodies being received at once, all connections together; over it, new calls get 503.",
)
@redis_url_option
@namespace_option
def proxy_command(
    model_specs: tuple[str, ...],
    config: str | None,
    host: str,
    port: int,
    auth_token: str | None,
    auth_token_file: str | None,
    max_body_mb: float,
    allow_unattributed: bool,
    header_timeout: float,
    body_timeout: float,
    idle_timeout: float,
    max_connections: int,
    max_inflight_body_mb: float,
    redis_url: str | None,
    namespace: str,
) -> None:
    """Serve an OpenAI-compatible proxy that stores every call as a span of its rollout attempt."""
    from ..store import RedisLightningStore
    from ..store.connection import resolve_shared_url, wait_for_redis

    try:
        auth_token = _auth_token(auth_token, auth_token_file)
        limits = ServerLimits(
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_body_bytes_in_flight=int(max_inflight_body_mb * (1 << 20)),
        )
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
        limits=limits,
        allow_unattributed=allow_unattributed,
    )
    try:
        asyncio.run(_serve(proxy))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from exc
