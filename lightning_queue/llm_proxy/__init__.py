"""The LLM proxy: OpenAI-compatible, records each call as a span of the rollout attempt in its URL.

from lightning_queue.llm_proxy import LLMProxy
"""

from .config import ModelConfig, UpstreamModel, load_config_file, parse_model_spec
from .in_flight import DrainTimeout
from .limits import ServerLimits
from .proxy import LLMProxy
from .registry import ProxyStatus, proxy_statuses, wait_proxies_drained
from .spans import SPAN_NAMES
from .state import ProxyStats

__all__ = [
    "SPAN_NAMES",
    "DrainTimeout",
    "LLMProxy",
    "ModelConfig",
    "ProxyStats",
    "ProxyStatus",
    "ServerLimits",
    "UpstreamModel",
    "load_config_file",
    "parse_model_spec",
    "proxy_statuses",
    "wait_proxies_drained",
]
