"""Versioned resources: LLM endpoints, proxied LLMs and prompt templates."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .template_format import MAX_FORMATTED_CHARS, bounded_format


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow")

    resource_type: str


class LLM(Resource):
    """An OpenAI-compatible endpoint and the model to ask for."""

    resource_type: Literal["llm"] = "llm"
    endpoint: str
    model: str
    api_key: str | None = None
    sampling_parameters: dict[str, Any] = Field(default_factory=dict)

    def get_base_url(self, *args: Any, **kwargs: Any) -> str:
        return self.endpoint


class ProxyLLM(LLM):
    """An LLM behind the LLMProxy: each attempt gets its own URL so its calls become its spans."""

    resource_type: Literal["proxy_llm"] = "proxy_llm"  # type: ignore[assignment]

    def get_base_url(self, rollout_id: str | None = None, attempt_id: str | None = None) -> str:
        if rollout_id is None and attempt_id is None:
            return self.endpoint
        if not isinstance(rollout_id, str) or not isinstance(attempt_id, str):
            raise ValueError(
                f"ProxyLLM.get_base_url needs both rollout_id and attempt_id as strings, "
                f"got rollout_id={rollout_id!r}, attempt_id={attempt_id!r}"
            )
        base = self.endpoint[:-1] if self.endpoint.endswith("/") else self.endpoint
        had_v1 = base.endswith("/v1")
        if had_v1:
            base = base[: -len("/v1")]
        url = f"{base}/rollout/{rollout_id}/attempt/{attempt_id}"
        return f"{url}/v1" if had_v1 else url

    def with_attempted_rollout(self, rollout: Any) -> LLM:
        """The plain LLM an agent should call during `rollout`'s attempt."""
        attempt = getattr(rollout, "attempt", None)
        if attempt is None:
            raise ValueError(f"ProxyLLM needs an AttemptedRollout to build its URL, got {type(rollout).__name__}")
        return LLM(
            endpoint=self.get_base_url(rollout.rollout_id, attempt.attempt_id),
            model=self.model,
            api_key=self.api_key,
            sampling_parameters=dict(self.sampling_parameters),
        )


class PromptTemplate(Resource):
    resource_type: Literal["prompt_template"] = "prompt_template"
    template: str
    engine: Literal["jinja", "f-string", "poml"] = "f-string"
    # Templates may come from model output (prompt search): formatting one must not build gigabytes.
    max_formatted_chars: ClassVar[int] = MAX_FORMATTED_CHARS

    def format(self, **kwargs: Any) -> str:
        """The template with `kwargs` filled in; ValueError if it would exceed `max_formatted_chars`."""
        if self.engine != "f-string":
            raise NotImplementedError(f"PromptTemplate.format supports the 'f-string' engine only, not {self.engine!r}")
        return bounded_format(self.template, kwargs=kwargs, max_chars=self.max_formatted_chars)


ResourceUnion = Annotated[LLM | ProxyLLM | PromptTemplate, Field(discriminator="resource_type")]
NamedResources = dict[str, ResourceUnion]
