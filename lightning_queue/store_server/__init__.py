"""`lq store-server`: Agent-Lightning v0.3's store HTTP protocol and OTLP/HTTP ingest over a LightningStore."""

from .app import create_app
from .settings import StoreServerSettings

__all__ = ["StoreServerSettings", "create_app"]
