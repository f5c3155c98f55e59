"""`lq retention`: show, set, clear or apply a namespace's retention policy (store/retention.py).

It lives beside `lq export` because `run` archives through the export before it deletes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import click
from pydantic import ValidationError

from ..options import describe, field_option
from ..store import RedisLightningStore
from ..store.connection import ping_error, redact, resolve_shared_url
from ..store.retention import RetentionPolicy, read_policy, write_policy
from ..store.settings import RedisSettings, namespace_option, redis_url_option
from .archive import archive_and_apply
from .run import ExportError

T = TypeVar("T")


def _store(redis_url: str | None, namespace: str | None) -> RedisLightningStore:
    settings = RedisSettings.from_env(url=redis_url, namespace=namespace)
    url = resolve_shared_url(settings.url)
    if (error := ping_error(url)) is not None:
        raise click.ClickException(f"no Redis answers at {redact(url)}: {error}")
    return RedisLightningStore(url, namespace=settings.namespace)


async def _closing(store: RedisLightningStore, work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await store.aclose()


@click.group("retention")
def retention_command() -> None:
    """Show, set or apply the namespace's retention policy (default: keep everything)."""


@retention_command.command("set")
@redis_url_option
@namespace_option
@field_option(RetentionPolicy, "max_age")
@field_option(RetentionPolicy, "keep_newest")
@field_option(RetentionPolicy, "memory_budget")
@field_option(RetentionPolicy, "min_age")
@field_option(RetentionPolicy, "auto_every")
@click.option(
    "--archive",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=RetentionPolicy.model_fields["archive"].description,
)
def set_command(
    redis_url: str | None,
    namespace: str | None,
    max_age: float | None,
    keep_newest: int | None,
    memory_budget: int | None,
    min_age: float,
    auto_every: float,
    archive: Path | None,
) -> None:
    """Store a policy; workers apply it every --auto-every s, `lq retention run` now (archiving ones: only run)."""
    try:
        policy = RetentionPolicy(
            max_age=max_age,
            keep_newest=keep_newest,
            memory_budget=memory_budget,
            min_age=min_age,
            auto_every=auto_every,
            archive=None if archive is None else str(archive.resolve()),
        )
    except ValidationError as exc:
        raise click.BadParameter(describe(exc)) from exc
    store = _store(redis_url, namespace)
    asyncio.run(_closing(store, write_policy(store, policy)))
    click.echo(f"retention of {store.namespace}: {policy.model_dump(exclude_none=True)}")


@retention_command.command("clear")
@redis_url_option
@namespace_option
def clear_command(redis_url: str | None, namespace: str | None) -> None:
    """Remove the policy: keep everything."""
    store = _store(redis_url, namespace)
    asyncio.run(_closing(store, write_policy(store, None)))
    click.echo(f"retention of {store.namespace}: keep everything")


@retention_command.command("show")
@redis_url_option
@namespace_option
def show_command(redis_url: str | None, namespace: str | None) -> None:
    """Print the policy."""
    store = _store(redis_url, namespace)
    policy = asyncio.run(_closing(store, read_policy(store)))
    shown = "keep everything" if policy is None else policy.model_dump(exclude_none=True)
    click.echo(f"retention of {store.namespace}: {shown}")


@retention_command.command("run")
@redis_url_option
@namespace_option
@click.option("--every", type=click.FloatRange(min=0.1), default=None, help="Repeat every S seconds (default: once).")
def run_command(redis_url: str | None, namespace: str | None, every: float | None) -> None:
    """Apply the policy now in bounded steps, archiving first if it says so (with --every: forever)."""

    async def loop(store: RedisLightningStore) -> None:
        while True:
            click.echo(f"retention of {store.namespace}: deleted {await archive_and_apply(store)} rollout(s)")
            if every is None:
                return
            await asyncio.sleep(every)

    store = _store(redis_url, namespace)
    try:
        asyncio.run(_closing(store, loop(store)))
    except (ExportError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
