"""The store: the abstract v0.3 contract and its Redis implementation."""

from .base import LightningStore
from .connection import resolve_url
from .redis import Claim, RedisLightningStore

__all__ = ["Claim", "LightningStore", "RedisLightningStore", "resolve_url"]
