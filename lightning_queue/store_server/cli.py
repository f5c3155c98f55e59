"""`lq store-server`: Agent-Lightning v0.3's store HTTP protocol (and OTLP ingest) over the Redis store."""

from __future__ import annotations

import logging

import click
from pydantic import ValidationError

from ..options import describe, options
from ..store.settings import RedisSettings, namespace_option, redis_url_option
from .serve import run
from .settings import StoreServerSettings


@click.command("store-server")
@options(StoreServerSettings)
@redis_url_option
@namespace_option
def store_server_command(redis_url: str | None, namespace: str | None, **fields: object) -> None:
    """Serve the store to Agent-Lightning clients: point `LightningStoreClient(url)` at it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = StoreServerSettings.model_validate(fields)
        redis = RedisSettings.from_env(url=redis_url, namespace=namespace)
    except ValidationError as exc:
        raise click.BadParameter(describe(exc)) from exc
    try:
        run(settings, redis)
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc
