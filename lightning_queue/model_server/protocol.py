"""The OpenAI request bodies we accept, and the error that turns into an OpenAI error response."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Fields of the OpenAI API this server does not implement, with the values that mean "not used".
_UNSUPPORTED: dict[str, tuple[object, ...]] = {
    "tools": (None, []),
    "functions": (None, []),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
}


class ApiError(Exception):
    """A request we refuse, reported as `{"error": {...}}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Body(BaseModel):
    # strict: "0.5" is not a temperature and true is not a token count.
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class _GenerationBody(_Body):
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        # An empty stop string would end every generation before its first token.
        if stop == "" or (isinstance(stop, list) and "" in stop):
            raise ValueError("stop strings must not be empty")
        return stop

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatRequest(_GenerationBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_GenerationBody):
    prompt: str | list[int]
    # The legacy API's logprobs is a count of alternatives, not a switch.
    logprobs: int | None = Field(default=None, ge=0, le=20)


class LoadRequest(_Body):
    path: str = Field(min_length=1)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, f"request body is not valid JSON: {error}", code="invalid_json") from error
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(body).__name__}", code="invalid_json")
    return body


_RequestT = TypeVar("_RequestT", bound=_Body)


def parse_request(kind: type[_RequestT], body: dict[str, Any]) -> _RequestT:
    for field, unused in _UNSUPPORTED.items():
        if field in body and not any(body[field] == value for value in unused):
            raise ApiError(
                400,
                f"{field!r} is not supported by this server (got {_short(body[field])})",
                code="unsupported_field",
                param=field,
            )
    try:
        request = kind.model_validate(body)
    except ValidationError as error:
        raise _as_api_error(error, body) from error
    if isinstance(request, _GenerationBody) and request.n not in (None, 1):
        raise ApiError(400, f"only n=1 is supported, got n={request.n}", code="unsupported_value", param="n")
    return request


def _as_api_error(error: ValidationError, body: dict[str, Any]) -> ApiError:
    """One message per bad field, naming the field and the value we got."""
    problems: dict[str, list[str]] = {}
    values: dict[str, object] = {}
    for detail in error.errors(include_url=False):
        missing = detail["type"] == "missing"
        path, value = _locate(body, detail["loc"], missing=missing)
        if missing:
            problems.setdefault(path, [])
            continue
        reason = detail["msg"].removeprefix("Value error, ")
        problems.setdefault(path, []).append(reason[0].lower() + reason[1:])
        values[path] = value
    messages = []
    for path, reasons in problems.items():
        if path not in values:
            messages.append(f"{path!r} is required")
            continue
        messages.append(f"{path!r}: {' or '.join(dict.fromkeys(reasons))} (got {_short(values[path])})")
    first = next(iter(problems))
    code = "missing_field" if first not in values else "invalid_value"
    return ApiError(400, "invalid request: " + "; ".join(messages), code=code, param=first)


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _locate(body: object, loc: tuple[int | str, ...], *, missing: bool) -> tuple[str, object]:
    """Follow pydantic's error location through the body, skipping the union member names in it."""
    path = ""
    value = body
    for index, part in enumerate(loc):
        last_and_missing = missing and index == len(loc) - 1
        if isinstance(value, dict) and isinstance(part, str) and (part in value or last_and_missing):
            path = f"{path}.{part}" if path else part
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            path = f"{path}[{part}]"
            value = value[part]
    return path or "body", value
