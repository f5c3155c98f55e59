"""What `lq dashboard` listens on and how often it samples: `DashboardSettings`, declared once."""

from __future__ import annotations

import ipaddress

from pydantic import field_validator

from ..options import Settings, setting

TOKEN_ENV = "LQ_DASHBOARD_TOKEN"


class DashboardSettings(Settings):
    """The dashboard's address, its optional access token and its sampling period."""

    host: str = setting(
        "127.0.0.1", help="Address to listen on; anything but loopback needs --token (or --allow-remote)."
    )
    port: int = setting(8500, help="Port to listen on (0: any free port, printed at start).", ge=0, le=65535)
    token: str | None = setting(
        None,
        help=f"Bearer token every request must carry (header or ?token=); env {TOKEN_ENV}.",
        envvar=TOKEN_ENV,
        metavar="TOKEN",
    )
    allow_remote: bool = setting(False, help="Listen on a non-loopback address without a token.")
    sample_seconds: float = setting(
        5.0, help="How often the overview's history (queue depth, throughput) is sampled.", gt=0, le=3600
    )
    history: int = setting(720, help="Samples kept for the overview charts.", ge=2, le=100_000)
    refresh_seconds: float = setting(2.0, help="How often open pages poll for new data.", gt=0, le=3600)

    @field_validator("token")
    @classmethod
    def _check_token(cls, token: str | None) -> str | None:
        if token is not None and len(token) < 8:
            raise ValueError(f"--token must be at least 8 characters, got {len(token)}")
        return token

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check_exposure(self) -> None:
        """Refuse to serve a run's data to the network with no token unless asked to."""
        if not self.is_loopback() and self.token is None and not self.allow_remote:
            raise ValueError(
                f"--host {self.host!r} is not loopback: give --token (or env {TOKEN_ENV}), or --allow-remote"
            )
