"""`lightning_queue.utils.otel`: the v0.3 attribute conventions (tags, links, flat ⇄ nested) round-trip."""

from __future__ import annotations

import pytest

from lightning_queue.semconv import LinkPydanticModel
from lightning_queue.types import Span
from lightning_queue.utils.otel import (
    check_attributes_sanity,
    extract_links_from_attributes,
    extract_tags_from_attributes,
    filter_and_unflatten_attributes,
    flatten_attributes,
    format_exception_attributes,
    full_qualified_name,
    make_link_attributes,
    make_tag_attributes,
    query_linked_spans,
    sanitize_attributes,
    unflatten_attributes,
)


def test_link_attributes_have_the_v03_keys_and_read_back() -> None:
    attrs = make_link_attributes({"gen_ai.response.id": "chatcmpl-1", "span_id": "abc"})
    assert attrs == {
        "agentlightning.link.0.key_match": "gen_ai.response.id",
        "agentlightning.link.0.value_match": "chatcmpl-1",
        "agentlightning.link.1.key_match": "span_id",
        "agentlightning.link.1.value_match": "abc",
    }
    assert extract_links_from_attributes(attrs) == [
        LinkPydanticModel(key_match="gen_ai.response.id", value_match="chatcmpl-1"),
        LinkPydanticModel(key_match="span_id", value_match="abc"),
    ]
    with pytest.raises(ValueError, match="'span_id' must have a string value"):
        make_link_attributes({"span_id": 3})  # type: ignore[dict-item]


def test_tag_attributes_read_back_and_no_tags_is_empty() -> None:
    attrs = make_tag_attributes(["reward.extrinsic", "gen_ai.model:gpt"])
    assert attrs == {"agentlightning.tag.0": "reward.extrinsic", "agentlightning.tag.1": "gen_ai.model:gpt"}
    assert extract_tags_from_attributes(attrs) == ["reward.extrinsic", "gen_ai.model:gpt"]
    assert extract_tags_from_attributes({"other": 1}) == []


def test_flatten_and_unflatten_round_trip() -> None:
    nested = {"a": {"b": 1, "c": [2, 3]}, "m": [{"role": "user", "content": "hi"}]}
    flat = flatten_attributes(nested)
    assert flat == {"a.b": 1, "a.c": [2, 3], "m.0.role": "user", "m.0.content": "hi"}
    assert flatten_attributes(nested, expand_leaf_lists=True)["a.c.1"] == 3
    assert unflatten_attributes(flatten_attributes(nested, expand_leaf_lists=True)) == nested
    # Not 0..n-1: stays a mapping.
    assert unflatten_attributes({"x.0": "a", "x.2": "b"}) == {"x": {"0": "a", "2": "b"}}
    assert filter_and_unflatten_attributes({"gen_ai.prompt.0.role": "user", "other": 1}, "gen_ai.prompt") == [
        {"role": "user"}
    ]
    with pytest.raises(ValueError, match="keys must be strings"):
        flatten_attributes({"a": {1: "x"}})


def test_query_linked_spans_matches_every_link_exactly() -> None:
    call = Span.from_attributes(attributes={"gen_ai.response.id": "r1"}, name="call", span_id="s1")
    other = Span.from_attributes(attributes={"gen_ai.response.id": "r2"}, name="other", span_id="s2")
    by_response = [LinkPydanticModel(key_match="gen_ai.response.id", value_match="r1")]
    assert query_linked_spans([call, other], by_response) == [call]
    assert query_linked_spans([call, other], [LinkPydanticModel(key_match="span_id", value_match="s2")]) == [other]
    both = [*by_response, LinkPydanticModel(key_match="span_id", value_match="s2")]
    assert query_linked_spans([call, other], both) == []


def test_sanitize_and_check_attributes() -> None:
    assert sanitize_attributes({"n": 1, "l": [1, 2.5], "d": {"k": [1, "a"]}, "mixed": ["a", 1]}) == {
        "n": 1,
        "l": [1.0, 2.5],
        "d": '{"k": [1, "a"]}',
        "mixed": '["a", 1]',
    }
    check_attributes_sanity({"ok": [1, 2], "s": "x"})
    with pytest.raises(ValueError, match="'bad'"):
        check_attributes_sanity({"bad": {"nested": 1}})
    with pytest.raises(ValueError, match="'l'"):
        check_attributes_sanity({"l": ["a", 1]})


def test_exception_attributes_and_qualified_names() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        attrs = format_exception_attributes(exc)
    assert attrs["exception.type"] == "KeyError"
    assert "missing" in attrs["exception.message"] and "Traceback" in attrs["exception.stacktrace"]
    assert full_qualified_name(dict) == "dict"
    assert full_qualified_name(Span) == "lightning_queue.types.tracer.Span"
