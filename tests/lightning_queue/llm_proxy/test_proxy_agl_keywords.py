"""`LLMProxy` takes Agent-Lightning v0.3's arguments: its positional order, and its LiteLLM knobs explained."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lightning_queue.llm_proxy import LLMProxy, UpstreamModel
from lightning_queue.store import InMemoryLightningStore

MODELS = [UpstreamModel(name="policy", base_url="http://127.0.0.1:9/v1", model="stand-in")]


def test_positional_arguments_are_agent_lightnings_port_model_list_store_host() -> None:
    store = InMemoryLightningStore()
    proxy = LLMProxy(0, MODELS, store, "127.0.0.1")
    assert proxy.port is None and proxy.store is store and proxy.host == "127.0.0.1"
    assert [m.name for m in proxy.model_list] == ["policy"]


def test_v03_defaults_are_accepted() -> None:
    proxy = LLMProxy(
        model_list=MODELS,
        launch_mode="mp",
        num_retries=0,
        num_workers=1,
        callbacks=["return_token_ids", "opentelemetry"],
        middlewares=["rollout_attempt", "stream_conversion"],
    )
    assert proxy.launch_mode == "thread"


def test_num_retries_warns_that_the_client_retries(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_queue.llm_proxy.proxy"):
        LLMProxy(model_list=MODELS, num_retries=3)
    assert "num_retries=3" in caplog.text and "max_retries" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"callbacks": ["logprobs"]}, "'logprobs'"),
        ({"callbacks": [object]}, "object"),
        ({"middlewares": ["message_inspection"]}, "'message_inspection'"),
        ({"litellm_config": {"general_settings": {}}}, "general_settings"),
        ({"num_workers": 4}, "num_workers=4"),
        ({"num_retries": -1}, "-1"),
        ({"num_retries": True}, "True"),
        ({"launcher_args": {"port": 1}}, "launcher_args"),
        ({"launch_mode": "process"}, "'process'"),
    ],
)
def test_litellm_only_knobs_are_refused_naming_the_value(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError) as raised:
        LLMProxy(model_list=MODELS, **kwargs)
    assert named in str(raised.value)
