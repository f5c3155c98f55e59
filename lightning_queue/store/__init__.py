"""The store: the abstract v0.3 contract and its Redis implementation."""

from .base import LightningStore
from .codec import CorruptRecord
from .connection import resolve_url
from .memory import EvictingRedisError
from .redis import Claim, RedisLightningStore

__all__ = ["Claim", "CorruptRecord", "EvictingRedisError", "LightningStore", "RedisLightningStore", "resolve_url"]
