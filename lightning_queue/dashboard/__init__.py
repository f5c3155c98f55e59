"""`lq dashboard`: a read-only web view of one namespace (overview, rollouts, spans, workers, resources).

aiohttp serves Jinja2 page shells and JSON under `/api/`; the pages fill themselves from that JSON and
poll it, so they update without a reload. Everything it reads goes through the store's query API.
"""

from .app import create_app
from .settings import DashboardSettings

__all__ = ["DashboardSettings", "create_app"]
