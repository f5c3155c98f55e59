"""OTLP/HTTP trace ingest: an `ExportTraceServiceRequest` (protobuf or JSON) into the store's `Span`s.

A span belongs to the rollout and attempt named by the `agentlightning.rollout_id` /
`agentlightning.attempt_id` attributes, looked up on the span first and its resource second (that is
where Agent-Lightning's exporter merges them). Spans that name neither are rejected and counted in the
response's `partial_success`, as OTLP asks, instead of vanishing silently.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ..semconv import RESOURCE_ATTEMPT_ID, RESOURCE_ROLLOUT_ID, RESOURCE_SPAN_SEQUENCE_ID
from ..types import Event, Link, OtelResource, Span, SpanContext, TraceStatus
from ..types.tracer import StatusCode

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_STATUS: dict[int, StatusCode] = {0: "UNSET", 1: "OK", 2: "ERROR"}


class OtlpError(ValueError):
    """The payload is not a readable OTLP trace export (answered with 400 and a `google.rpc.Status`)."""


# OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping expects base64.
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as exc:
                    raise OtlpError(f"{key} {value!r} is not a hex string") from exc
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The export request in `body`; raises OtlpError naming what is wrong."""
    message = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError) as exc:
            raise OtlpError(f"unable to parse the OTLP protobuf traces payload: {exc}") from exc
        return message
    if content_type == JSON:
        try:
            document = json.loads(body) if body else {}
        except (ValueError, RecursionError) as exc:
            raise OtlpError(f"body is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise OtlpError(f"an OTLP JSON export is an object, got {type(document).__name__}")
        _hex_ids_to_base64(document)
        try:
            json_format.ParseDict(document, message, ignore_unknown_fields=True)
        except (json_format.ParseError, binascii.Error, ValueError, RecursionError) as exc:
            raise OtlpError(f"unable to parse the OTLP JSON traces payload: {exc}") from exc
        return message
    raise OtlpError(f"unsupported Content-Type {content_type!r}; expected {PROTOBUF!r} or {JSON!r}")


def encode_response(message: ExportTraceServiceResponse, content_type: str) -> bytes:
    if content_type == JSON:
        return str(json_format.MessageToJson(message)).encode()
    return bytes(message.SerializeToString())


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


INVALID_ARGUMENT = 3


def encode_status(message: str, content_type: str) -> bytes:
    """A `google.rpc.Status` (code INVALID_ARGUMENT, the message), the body OTLP gives a 400."""
    if content_type == JSON:
        return json.dumps({"code": INVALID_ARGUMENT, "message": message}).encode()
    # Status is two fields: code (1, varint) and message (2, length-delimited); the googleapis protos
    # package would be a dependency for ten bytes.
    text = message.encode()
    return b"\x08" + _varint(INVALID_ARGUMENT) + b"\x12" + _varint(len(text)) + text


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "int_value":
        return int(value.int_value)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _seconds(unix_nano: int) -> float | None:
    return unix_nano / 1e9 if unix_nano else None


def _sequence_id(raw: Any) -> int | None:
    try:
        value = int(str(raw))
    except ValueError:
        return None
    return value if value >= 0 else None


def _pick(key: str, span_attrs: dict[str, Any], resource_attrs: dict[str, Any]) -> Any:
    """A span's own attribute wins over its resource's."""
    return span_attrs[key] if key in span_attrs else resource_attrs.get(key)


@dataclass
class Decoded:
    """The spans of one export; `unassigned` still need a sequence id; `rejected` named no attempt."""

    spans: list[Span] = field(default_factory=list)
    unassigned: list[Span] = field(default_factory=list)
    rejected: int = 0


def spans_of(request: ExportTraceServiceRequest) -> Decoded:
    out = Decoded()
    for resource_spans in request.resource_spans:
        resource_attrs = _attributes(resource_spans.resource.attributes)
        resource = OtelResource(attributes=resource_attrs, schema_url=resource_spans.schema_url)
        for scope_spans in resource_spans.scope_spans:
            for proto in scope_spans.spans:
                attrs = _attributes(proto.attributes)

                rollout_id = _pick(RESOURCE_ROLLOUT_ID, attrs, resource_attrs)
                attempt_id = _pick(RESOURCE_ATTEMPT_ID, attrs, resource_attrs)
                if rollout_id is None or attempt_id is None:
                    out.rejected += 1
                    continue
                raw_sequence = _pick(RESOURCE_SPAN_SEQUENCE_ID, attrs, resource_attrs)
                sequence_id = None if raw_sequence is None else _sequence_id(raw_sequence)
                trace_id, span_id = proto.trace_id.hex(), proto.span_id.hex()
                span = Span(
                    rollout_id=str(rollout_id),
                    attempt_id=str(attempt_id),
                    sequence_id=-1 if sequence_id is None else sequence_id,
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_id=proto.parent_span_id.hex() or None,
                    name=proto.name,
                    status=TraceStatus(
                        status_code=_STATUS.get(proto.status.code, "UNSET"),
                        description=proto.status.message or None,
                    ),
                    attributes=attrs,
                    events=[
                        Event(name=e.name, attributes=_attributes(e.attributes), timestamp=_seconds(e.time_unix_nano))
                        for e in proto.events
                    ],
                    links=[
                        Link(
                            context=SpanContext(
                                trace_id=link.trace_id.hex(), span_id=link.span_id.hex(), is_remote=True, trace_state={}
                            ),
                            attributes=_attributes(link.attributes),
                        )
                        for link in proto.links
                    ],
                    start_time=_seconds(proto.start_time_unix_nano),
                    end_time=_seconds(proto.end_time_unix_nano),
                    context=SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False, trace_state={}),
                    parent=None,
                    resource=resource,
                )
                out.spans.append(span)
                if sequence_id is None:
                    out.unassigned.append(span)
    return out


async def ingest(
    request: ExportTraceServiceRequest,
    reserve: Callable[[Sequence[tuple[str, str]]], Awaitable[Sequence[int]]],
    store_spans: Callable[[Sequence[Span]], Awaitable[Sequence[Span]]],
) -> ExportTraceServiceResponse:
    """Give unsequenced spans the next ids of their rollouts, store all, and say how many were rejected."""
    decoded = spans_of(request)
    if decoded.unassigned:
        ids = await reserve([(s.rollout_id, s.attempt_id) for s in decoded.unassigned])
        for span, sequence_id in zip(decoded.unassigned, ids, strict=True):
            span.sequence_id = sequence_id
    if decoded.spans:
        await store_spans(decoded.spans)
    response = ExportTraceServiceResponse()
    if decoded.rejected:
        response.partial_success.rejected_spans = decoded.rejected
        response.partial_success.error_message = (
            f"{decoded.rejected} span(s) lacked {RESOURCE_ROLLOUT_ID} or {RESOURCE_ATTEMPT_ID} "
            "(as a span or resource attribute) and were not stored"
        )
    return response
