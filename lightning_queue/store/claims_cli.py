"""`lq claims`: pause, resume or show the claims of a namespace (the weight-sync barrier of pause.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from .connection import ping_error, redact, resolve_shared_url
from .errors import PauseHeld
from .pause import DEFAULT_PAUSE_TTL
from .redis import RedisLightningStore
from .settings import RedisSettings, namespace_option, redis_url_option

T = TypeVar("T")


def run_on_store(
    redis_url: str | None, namespace: str | None, work: Callable[[RedisLightningStore], Awaitable[T]]
) -> T:
    """Run `work` on the namespace's store at a shared Redis (a private embedded one would show nothing)."""
    settings = RedisSettings.from_env(url=redis_url, namespace=namespace)
    url = resolve_shared_url(settings.url)
    if (error := ping_error(url)) is not None:
        raise click.ClickException(f"no Redis answers at {redact(url)}: {error}")
    store = RedisLightningStore(url, namespace=settings.namespace, scan_debounce_seconds=3600)

    async def closing() -> T:
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(closing())
    except (ValueError, TypeError, PauseHeld) as exc:
        raise click.ClickException(str(exc)) from exc


async def claims_report(store: RedisLightningStore) -> dict[str, object]:
    """The claim gate's state: pause, policy version, staleness bound and held entries (also `lq status`)."""
    pause = await store.pause_status()
    bound = await store.get_staleness()
    return {
        "policy_version": await store.policy_version(),
        "paused": pause.paused,
        "pause_holder": pause.holder,
        "pause_remaining_seconds": pause.remaining_seconds,
        "expired_pause_holder": pause.expired_holder,
        "held_entries": await store.held_entries(),
        "staleness": None if bound is None else bound.describe(),
    }


def format_claims(report: dict[str, object]) -> list[str]:
    if report["paused"]:
        paused = f"paused by {report['pause_holder']} for {report['pause_remaining_seconds']:.1f} s more"
    else:
        paused = "open"
        if report["expired_pause_holder"]:
            paused += f" (the pause of {report['expired_pause_holder']} expired without a resume)"
    return [
        f"claims      {paused}; {report['held_entries']} held entries",
        f"policy      version {report['policy_version']}",
        f"staleness   {report['staleness'] or 'no bound'}",
    ]


@click.group("claims")
def claims_command() -> None:
    """Pause, resume or show the namespace's claims (the barrier of a weight sync)."""


@claims_command.command("pause")
@redis_url_option
@namespace_option
@click.option(
    "--ttl",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_PAUSE_TTL,
    show_default=True,
    help="Seconds until the pause ends by itself unless renewed (this command does not renew it).",
)
@click.option("--holder", default=None, help="The holder token to pause as (default: a fresh one, printed).")
def pause_command(redis_url: str | None, namespace: str | None, ttl: float, holder: str | None) -> None:
    """Stop workers claiming rollouts; in-flight rollouts go on. Prints the holder token."""
    token = run_on_store(redis_url, namespace, lambda store: store.pause_claims(ttl, holder=holder))
    click.echo(f"claims paused for {ttl:g} s; holder {token} (lq claims resume --holder {token})")


@claims_command.command("resume")
@redis_url_option
@namespace_option
@click.option("--holder", default=None, help="Resume only this holder's pause (default: whoever's).")
def resume_command(redis_url: str | None, namespace: str | None, holder: str | None) -> None:
    """End the pause: workers claim again."""
    resumed = run_on_store(redis_url, namespace, lambda store: store.resume_claims(holder))
    if not resumed:
        who = "" if holder is None else f" of holder {holder}"
        raise click.ClickException(f"no pause{who} in force")
    click.echo("claims resumed")


@claims_command.command("status")
@redis_url_option
@namespace_option
def status_command(redis_url: str | None, namespace: str | None) -> None:
    """Show the pause, the policy version, the staleness bound and the held entries."""
    report = run_on_store(redis_url, namespace, claims_report)
    click.echo("\n".join(format_claims(report)))
