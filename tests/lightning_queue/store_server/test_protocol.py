"""The wire behaviour of `lq store-server`: error bodies, limits, auth, OTLP ingest and metrics."""

from __future__ import annotations

import gzip

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from lightning_queue import LightningStoreClient

API = "/v1/agl"


async def _post(url: str, path: str, **kwargs):
    async with aiohttp.ClientSession() as session, session.post(url + path, **kwargs) as resp:
        return resp.status, await resp.read(), resp.headers


async def _get(url: str, path: str, **kwargs):
    async with aiohttp.ClientSession() as session, session.get(url + path, **kwargs) as resp:
        return resp.status, await resp.read()


async def test_bad_bodies_get_422_unknown_routes_404_unknown_ids_404(server_url: str) -> None:
    status, body, _ = await _post(server_url, API + "/rollouts/search", data=b"{bad")
    assert status == 422 and b"json_invalid" in body
    status, body, _ = await _post(server_url, API + "/rollouts/search", json={"status_in": ["nope"]})
    assert status == 422 and b'"loc": ["body", "status_in", 0]' in body
    assert await _get(server_url, API + "/nothing") == (404, b'{"detail": "Not Found"}')
    status, body, _ = await _post(server_url, API + "/rollouts/ro-missing", json={"status": "failed"})
    assert status == 404 and b"ro-missing" in body and b"Traceback" not in body
    status, body, _ = await _post(server_url, API + "/rollouts/search", json={"offset": -1})
    assert status == 400 and b"Offset" in body


async def test_oversized_body_is_413(start_server) -> None:
    url = await start_server(max_body_bytes=2048)
    status, body, _ = await _post(url, API + "/queues/rollouts/enqueue", data=b"x" * 4096)
    assert status == 413 and b"2048" in body


async def test_token_is_required_except_for_health(start_server) -> None:
    url = await start_server(token="s3cret")
    assert (await _get(url, API + "/health"))[0] == 200
    assert (await _get(url, API + "/statistics"))[0] == 401
    assert (await _get(url, API + "/statistics", headers={"Authorization": "Bearer wrong"}))[0] == 401
    client = LightningStoreClient(url, token="s3cret", connect_retries=())
    try:
        assert (await client.enqueue_rollout({"q": 1})).status == "queuing"
    finally:
        await client.aclose()


async def _attempt(client: LightningStoreClient):
    await client.enqueue_rollout({"q": 1})
    claimed = await client.dequeue_rollout(worker_id="w")
    return claimed.rollout_id, claimed.attempt.attempt_id


async def test_otlp_protobuf_spans_land_on_the_attempt_named_by_resource(client, server_url) -> None:
    rollout_id, attempt_id = await _attempt(client)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in (("agentlightning.rollout_id", rollout_id), ("agentlightning.attempt_id", attempt_id)):
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    span = rs.scope_spans.add().spans.add()
    span.name, span.trace_id, span.span_id = "llm", bytes(range(16)), bytes(range(8))
    orphan = rs.scope_spans.add()
    del orphan  # a scope without spans is fine
    status, body, _ = await _post(
        server_url,
        "/v1/traces",
        data=gzip.compress(request.SerializeToString()),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert status == 200
    ExportTraceServiceResponse().ParseFromString(body)
    spans = await client.query_spans(rollout_id)
    assert [(s.name, s.trace_id, s.sequence_id) for s in spans] == [("llm", bytes(range(16)).hex(), 1)]


async def test_otlp_json_with_hex_ids_and_span_without_ids_is_rejected_partially(client, server_url) -> None:
    rollout_id, attempt_id = await _attempt(client)
    attrs = [
        {"key": "agentlightning.rollout_id", "value": {"stringValue": rollout_id}},
        {"key": "agentlightning.attempt_id", "value": {"stringValue": attempt_id}},
    ]
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"name": "ok", "traceId": "ab" * 16, "spanId": "cd" * 8, "attributes": attrs},
                            {"name": "orphan", "traceId": "ab" * 16, "spanId": "ef" * 8},
                        ]
                    }
                ]
            }
        ]
    }
    status, body, _ = await _post(server_url, "/v1/traces", json=doc)
    assert status == 200 and b'"rejectedSpans": "1"' in body
    spans = await client.query_spans(rollout_id, attempt_id)
    assert [(s.name, s.span_id) for s in spans] == [("ok", "cd" * 8)]


async def test_otlp_garbage_is_400_and_zip_bombs_413(start_server) -> None:
    url = await start_server(max_body_bytes=4096)
    headers = {"Content-Type": "application/x-protobuf"}
    assert (await _post(url, "/v1/traces", data=b"\xff\xff\xff", headers=headers))[0] == 400
    bomb = gzip.compress(b"\0" * 100_000)
    status, body, _ = await _post(url, "/v1/traces", data=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert status == 413 and b"4096" in body
    assert (await _post(url, "/v1/traces", data=b"x", headers={"Content-Type": "text/plain"}))[0] == 400


async def test_prometheus_counts_requests_by_route_template(client, server_url) -> None:
    await client.get_rollout_by_id("ro-abc123")
    status, body = await _get(server_url, "/v1/prometheus")
    text = body.decode()
    assert status == 200
    assert 'lq_store_server_requests_total{method="GET",route="/v1/agl/rollouts/{rollout_id}",status="200"}' in text
    assert "ro-abc123" not in text


async def test_client_capabilities_and_wait_over_http(client) -> None:
    assert client.capabilities["otlp_traces"] is True
    assert client.otlp_traces_endpoint().endswith("/v1/traces")
    rollout = await client.enqueue_rollout({"q": 1})
    assert await client.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=0.05) == []
    await client.update_rollout(rollout.rollout_id, status="succeeded")
    done = await client.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=5)
    assert [r.status for r in done] == ["succeeded"]
