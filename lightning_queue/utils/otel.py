"""Span attribute conventions as functions (`agentlightning.utils.otel`): tags, links, flat ⇄ nested attributes.

OpenTelemetry attributes are flat (`str → primitive or list of one primitive type`); the v0.3 conventions
nest structured values under dotted keys (`agentlightning.link.0.key_match`). These helpers build and read
them, on stored `Span`s or anything else with an `attributes` mapping. None of them needs the OTel SDK.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from .. import semconv
from ..semconv import LinkPydanticModel

_PRIMITIVES = (str, bool, int, float)
T_span = TypeVar("T_span")


def full_qualified_name(obj: type) -> str:
    """`module.QualName` of a class (builtins keep their bare name: `int`, `dict`)."""
    module = obj.__module__
    return obj.__qualname__ if module == "builtins" else f"{module}.{obj.__qualname__}"


def flatten_attributes(nested: Mapping[str, Any] | Sequence[Any], *, expand_leaf_lists: bool = False) -> dict[str, Any]:
    """`{"a": {"b": 1, "c": [2, 3]}}` → `{"a.b": 1, "a.c": [2, 3]}` (`{"a.c.0": 2, "a.c.1": 3}` when expanding).

    A list of one primitive type is kept as one attribute unless `expand_leaf_lists`; any other list is
    indexed. Dict keys must be strings (a ValueError names the path of one that is not).
    """
    flat: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                if not isinstance(key, str):
                    raise ValueError(f"attribute keys must be strings, got {key!r} under {path or 'the top level'!r}")
                walk(child, f"{path}.{key}" if path else key)
        elif isinstance(value, list | tuple):
            kinds = {type(item) for item in value}
            if path and value and not expand_leaf_lists and len(kinds) == 1 and kinds <= set(_PRIMITIVES):
                flat[path] = list(value)
                return
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}" if path else str(index))
        else:
            flat[path] = value

    walk(nested, "")
    return flat


def unflatten_attributes(flat: Mapping[str, Any]) -> dict[str, Any] | list[Any]:
    """The inverse of `flatten_attributes`: a level whose keys are exactly `0..n-1` becomes a list."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value

    def listify(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        converted = {key: listify(child) for key, child in node.items()}
        if converted and all(key.isdigit() for key in converted):
            indexes = sorted(int(key) for key in converted)
            if indexes == list(range(len(indexes))):
                return [converted[str(i)] for i in indexes]
        return converted

    result: dict[str, Any] | list[Any] = listify(root)
    return result


def filter_attributes(attributes: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The attributes named `prefix` or `prefix.<anything>`."""
    return {k: v for k, v in attributes.items() if k == prefix or k.startswith(prefix + ".")}


def filter_and_unflatten_attributes(attributes: Mapping[str, Any], prefix: str) -> dict[str, Any] | list[Any]:
    """The attributes under `prefix.`, nested (prefix removed); `{}` when there are none."""
    start = prefix + "."
    if prefix in attributes:
        raise ValueError(f"attribute {prefix!r} is a value itself; only the keys under {start!r} can be nested")
    return unflatten_attributes({k[len(start) :]: v for k, v in attributes.items() if k.startswith(start)})


def make_tag_attributes(tags: Sequence[str]) -> dict[str, Any]:
    """Tags as span attributes: `agentlightning.tag.0`, `agentlightning.tag.1`, ..."""
    bad = [t for t in tags if not isinstance(t, str)]
    if bad:
        raise ValueError(f"tags must be strings, got {bad[0]!r}")
    return flatten_attributes({semconv.TAG_PREFIX: list(tags)}, expand_leaf_lists=True)


def extract_tags_from_attributes(attributes: Mapping[str, Any]) -> list[str]:
    """The tags `make_tag_attributes` wrote."""
    tags = filter_and_unflatten_attributes(attributes, semconv.TAG_PREFIX)
    if isinstance(tags, dict):
        if tags:
            raise ValueError(f"tag attributes are not indexed 0..n-1: {sorted(tags)}")
        return []
    return [str(tag) for tag in tags]


def make_link_attributes(links: Mapping[str, str]) -> dict[str, Any]:
    """Links to other spans: `{"gen_ai.response.id": "chatcmpl-1"}` → `agentlightning.link.0.key_match` / `value_match`.

    `span_id` and `trace_id` as keys link to a span by its ids; any other key to spans having that attribute value.
    """
    entries = []
    for key, value in links.items():
        if not isinstance(value, str):
            raise ValueError(f"link {key!r} must have a string value, got {type(value).__name__}: {value!r:.80}")
        entries.append({"key_match": key, "value_match": value})
    return flatten_attributes({semconv.LINK_PREFIX: entries}, expand_leaf_lists=True)


def extract_links_from_attributes(attributes: Mapping[str, Any]) -> list[LinkPydanticModel]:
    """The links `make_link_attributes` wrote."""
    links = filter_and_unflatten_attributes(attributes, semconv.LINK_PREFIX)
    if isinstance(links, dict):
        if links:
            raise ValueError(f"link attributes are not indexed 0..n-1: {sorted(links)}")
        return []
    return [LinkPydanticModel.model_validate(link) for link in links]


def _span_ids(span: Any) -> tuple[str | None, str | None]:
    if hasattr(span, "span_id") and hasattr(span, "trace_id"):
        return span.trace_id, span.span_id
    context = getattr(span, "context", None)  # an OTel SDK ReadableSpan
    if context is None:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def query_linked_spans(spans: Sequence[T_span], links: Sequence[LinkPydanticModel]) -> list[T_span]:
    """The spans matching every link (exact matches: `trace_id`, `span_id`, else the attribute's value)."""
    matched = []
    for span in spans:
        trace_id, span_id = _span_ids(span)
        attributes = getattr(span, "attributes", None) or {}
        found = {"trace_id": trace_id, "span_id": span_id}
        if all(
            (found[link.key_match] if link.key_match in found else attributes.get(link.key_match)) == link.value_match
            for link in links
        ):
            matched.append(span)
    return matched


def sanitize_list_attribute_sanity(values: Sequence[Any]) -> list[Any]:
    """A list as a valid attribute value (one primitive type; ints and floats together become floats)."""
    if all(isinstance(v, str) for v in values):
        return list(values)
    if all(isinstance(v, bool) for v in values):
        return list(values)
    if all(isinstance(v, int) for v in values):
        return [int(v) for v in values]
    if all(isinstance(v, int | float) for v in values):
        return [float(v) for v in values]
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(f"a list attribute must hold one primitive type, got {', '.join(kinds)}")


def _json(value: Any, force: bool) -> str:
    try:
        return json.dumps(value, default=str if force else None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"attribute value of type {type(value).__name__} is not JSON serialisable") from exc


def sanitize_attribute_value(value: Any, force: bool = True) -> Any:
    """A primitive or a one-type list as is; anything else as JSON (with `force`, unknown types by `str`)."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, list | tuple):
        try:
            return sanitize_list_attribute_sanity(value)
        except ValueError:
            return _json(value, force)  # a mixed list is stored as JSON, like any other structure
    return _json(value, force)


def sanitize_attributes(attributes: Mapping[str, Any], force: bool = True) -> dict[str, Any]:
    """Every value made a valid attribute value (see `sanitize_attribute_value`)."""
    result = {}
    for key, value in attributes.items():
        try:
            result[key] = sanitize_attribute_value(value, force=force)
        except ValueError as exc:
            raise ValueError(f"attribute {key!r}: {exc}") from exc
    return result


def check_attributes_sanity(attributes: Mapping[Any, Any]) -> None:
    """A ValueError naming the first key or value that is not a valid OpenTelemetry attribute."""
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise ValueError(f"attribute keys must be strings, got {key!r}")
        if isinstance(value, list | tuple):
            try:
                sanitize_list_attribute_sanity(value)
            except ValueError as exc:
                raise ValueError(f"attribute {key!r}: {exc}") from exc
        elif not isinstance(value, _PRIMITIVES):
            raise ValueError(
                f"attribute {key!r} must be a str, bool, int, float or a list of one of them, got {value!r:.80}"
            )


def format_exception_attributes(exception: BaseException) -> dict[str, Any]:
    """The OpenTelemetry `exception.*` attributes of an exception."""
    stack = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
    attributes: dict[str, Any] = {
        semconv.EXCEPTION_TYPE: type(exception).__name__,
        semconv.EXCEPTION_MESSAGE: str(exception),
        semconv.EXCEPTION_ESCAPED: True,
    }
    if stack.strip():
        attributes[semconv.EXCEPTION_STACKTRACE] = stack
    return attributes


def get_tracer(name: str = "lightning_queue") -> Any:
    """The OpenTelemetry tracer `name` of the current tracer provider (what a rollout's tracer installed).

    Needs the OpenTelemetry API (`pip install opentelemetry-api`); a RuntimeError says so when it is missing.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        raise RuntimeError(
            "lightning_queue.utils.otel.get_tracer needs the OpenTelemetry API: `pip install opentelemetry-api`"
        ) from None
    return trace.get_tracer(name)
