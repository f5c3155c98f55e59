"""`lq dashboard`: serve the read-only dashboard of one namespace."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from aiohttp import web
from pydantic import ValidationError

from ..options import describe, options
from ..store import RedisLightningStore
from ..store.connection import ping_error, redact, resolve_shared_url
from ..store.settings import RedisSettings, namespace_option, redis_url_option
from .app import create_app
from .settings import DashboardSettings


async def _serve(settings: DashboardSettings, url: str, namespace: str) -> None:
    # No lazy watchdog sweeps: a dashboard only reads (an infinite debounce never sweeps).
    store = RedisLightningStore(url, namespace=namespace, scan_debounce_seconds=float("inf"))
    runner = web.AppRunner(create_app(store, settings), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1]
        # Tests and scripts read this first line for the address (port 0 picks a free one).
        click.echo(f"lq dashboard: serving {namespace!r} at http://{settings.host}:{port}/", nl=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.aclose()


@click.command("dashboard")
@redis_url_option
@namespace_option
@options(DashboardSettings)
def dashboard_command(redis_url: str | None, namespace: str, **values: Any) -> None:
    """Serve a read-only web dashboard of a namespace: overview, rollouts, spans, workers, resources."""
    try:
        settings = DashboardSettings(**values)
        settings.check_exposure()
        redis = RedisSettings.from_env(url=redis_url, namespace=namespace)
        url = resolve_shared_url(redis.url)
        if (error := ping_error(url)) is not None:
            raise ConnectionError(f"no Redis answers at {redact(url)}: {error}")
    except ValidationError as exc:
        raise click.BadParameter(describe(exc)) from exc
    except (ValueError, ConnectionError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        asyncio.run(_serve(settings, url, redis.namespace))
    except KeyboardInterrupt:
        click.echo("lq dashboard: stopped", err=True)  # Ctrl-C is how it is meant to end: no traceback
    except OSError as exc:  # the port is taken, the address is not ours
        raise click.ClickException(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
