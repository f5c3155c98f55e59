"""The agent API: LitAgent dispatch and the functional decorators' injection by parameter name."""

from __future__ import annotations

from typing import Any

import pytest

from lightning_queue.litagent import FunctionalLitAgent, LitAgent, llm_rollout, prompt_rollout, rollout
from lightning_queue.types import LLM, Attempt, AttemptedRollout, PromptTemplate, ProxyLLM

ATTEMPTED = AttemptedRollout(
    rollout_id="ro-1",
    input={"q": 1},
    start_time=0.0,
    attempt=Attempt(rollout_id="ro-1", attempt_id="at-1", sequence_id=1, start_time=0.0),
)
PROXY = ProxyLLM(endpoint="http://proxy:9000/v1/", model="m", api_key="k", sampling_parameters={"temperature": 0.5})
TEMPLATE = PromptTemplate(template="Q: {q}", engine="f-string")


def test_llm_param_receives_the_first_llm_with_a_proxy_turned_into_the_attempt_url() -> None:
    seen: dict[str, Any] = {}

    @llm_rollout
    def agent(task: Any, llm: LLM) -> float:
        seen["llm"] = llm
        return 1.0

    resources: dict[str, Any] = {"tpl": TEMPLATE, "main": PROXY, "other": LLM(endpoint="http://x", model="y")}
    assert agent.rollout(ATTEMPTED.input, resources, ATTEMPTED) == 1.0
    llm = seen["llm"]
    assert type(llm) is LLM
    assert llm.endpoint == "http://proxy:9000/rollout/ro-1/attempt/at-1/v1"
    assert (llm.model, llm.api_key, llm.sampling_parameters) == ("m", "k", {"temperature": 0.5})


def test_strip_proxy_false_passes_the_proxy_llm_unchanged() -> None:
    @llm_rollout(strip_proxy=False)
    def agent(task: Any, llm: LLM) -> LLM:
        return llm

    assert agent.rollout(None, {"main": PROXY}, ATTEMPTED) is PROXY  # type: ignore[comparison-overlap]


async def test_async_agent_receives_task_prompt_template_rollout_and_resources() -> None:
    @rollout
    async def agent(task: Any, prompt_template: PromptTemplate, rollout: AttemptedRollout, resources: Any) -> Any:
        return prompt_template.format(**task), rollout.rollout_id, sorted(resources)

    assert agent.is_async()
    result = await agent.rollout_async({"q": 7}, {"tpl": TEMPLATE}, ATTEMPTED)
    assert result == ("Q: 7", "ro-1", ["tpl"])


def test_decorated_function_stays_callable_as_the_original() -> None:
    @rollout
    def agent(task: int) -> float:
        """Doc."""
        return task * 2.0

    assert isinstance(agent, FunctionalLitAgent)
    assert agent(3) == 6.0
    assert agent.__doc__ == "Doc." and agent.__name__ == "agent"  # type: ignore[attr-defined]


def test_missing_llm_resource_is_a_value_error_naming_what_exists() -> None:
    @llm_rollout
    def agent(task: Any, llm: LLM) -> None:
        return None

    with pytest.raises(ValueError, match=r"needs an LLM resource.*tpl \(prompt_template\)"):
        agent.rollout(None, {"tpl": TEMPLATE}, ATTEMPTED)


def test_sync_call_of_an_async_agent_and_the_reverse_are_runtime_errors() -> None:
    @rollout
    async def async_agent(task: Any) -> None:
        return None

    @rollout
    def sync_agent(task: Any) -> None:
        return None

    with pytest.raises(RuntimeError, match="is async"):
        async_agent.rollout(None, {}, ATTEMPTED)
    with pytest.raises(RuntimeError, match="is not async"):
        sync_agent.rollout_async(None, {}, ATTEMPTED).send(None)


@pytest.mark.parametrize(
    ("decorator", "message"),
    [(llm_rollout, "@llm_rollout needs a parameter named 'llm'"), (prompt_rollout, "needs a parameter named")],
)
def test_llm_and_prompt_decorators_require_their_parameter(decorator: Any, message: str) -> None:
    def agent(task: Any, rollout: Any) -> None:
        return None

    with pytest.raises(TypeError, match=message):
        decorator(agent)


def test_first_parameter_must_be_task_and_others_must_be_suppliable() -> None:
    def wrong_first(question: Any) -> None:
        return None

    def unknown(task: Any, temperature: float) -> None:
        return None

    def defaulted(task: Any, temperature: float = 0.0) -> float:
        return temperature

    with pytest.raises(TypeError, match="must take `task` as its first parameter, found 'question'"):
        rollout(wrong_first)
    with pytest.raises(TypeError, match="parameter 'temperature' the worker cannot supply"):
        rollout(unknown)
    assert rollout(defaulted).rollout(None, {}, ATTEMPTED) == 0.0


class Counting(LitAgent[int]):
    def training_rollout(self, task: int, resources: Any, rollout: AttemptedRollout) -> float:
        return 1.0

    def rollout(self, task: int, resources: Any, rollout: AttemptedRollout) -> float:
        return 0.5


class AsyncOnly(LitAgent[int]):
    async def validation_rollout_async(self, task: int, resources: Any, rollout: AttemptedRollout) -> float:
        return 2.0


async def test_lit_agent_variants_delegate_to_rollout_and_decide_is_async() -> None:
    agent = Counting()
    assert not agent.is_async()
    assert agent.training_rollout(1, {}, ATTEMPTED) == 1.0
    assert agent.validation_rollout(1, {}, ATTEMPTED) == 0.5
    assert AsyncOnly().is_async()
    assert await AsyncOnly().validation_rollout_async(1, {}, ATTEMPTED) == 2.0
    with pytest.raises(NotImplementedError, match="AsyncOnly implements neither"):
        await AsyncOnly().training_rollout_async(1, {}, ATTEMPTED)
