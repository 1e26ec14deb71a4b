"""Traces over the real wire: a `chronicle serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` exports
through OpenTelemetry's OTLP/HTTP exporter to a small HTTP receiver in this test, which decodes
each body as the collector would (opentelemetry-proto's `ExportTraceServiceRequest`). A posted
message's spans arrive as request → command → group commit in one trace, each carrying the
request's correlation id, and the access log line names that trace; the projection process,
the assistant and the conversion worker send spans of their own."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from infrastructure.settings import Settings
from infrastructure.tracing import request_tracing
from tests.document_files import MARKDOWN
from tests.e2e.server import Server
from tests.ops.system_binaries import eventually

pytestmark = pytest.mark.e2e


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf exports on /v1/traces and keeps every span, flattened."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.path == "/v1/traces" and self.headers["content-type"] == "application/x-protobuf"
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.keep(request)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def keep(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex(),
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                                "process": resource.get("chronicle.process"),
                                "service": resource.get("service.name"),
                            }
                        )

    def find(self, **wanted: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if all(s.get(k) == v for k, v in wanted.items())]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def test_a_requests_spans_reach_an_otlp_receiver_linked_by_the_correlation_id(tmp_path):
    receiver = OtlpReceiver()
    server = Server(tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "CHRONICLE_LOG_FORMAT": "json"}, log_level="info").start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Traced", "assistant": True}).json()["id"]
        posted = ann.post(f"/api/sessions/{sid}/messages", {"content": "Where is the map?"}, headers={"X-Request-ID": "trace-me-2"})
        assert posted.status_code == 201
        document = ann.post("/api/documents", files={"file": ("map.md", MARKDOWN, "text/markdown")}).json()
        assert ann.post(f"/api/documents/{document['id']}/conversions", {"target": "html"}).status_code == 202

        route = "POST /api/sessions/{session_id}/messages"
        request = eventually(lambda: receiver.find(name=route), 30, "the request's span")[0]
        assert request["attributes"]["chronicle.correlation_id"] == "trace-me-2"
        assert request["attributes"]["http.route"] == "/api/sessions/{session_id}/messages"
        assert request["attributes"]["http.status_code"] == 201 and request["service"] == "chronicle"
        assert "?" not in request["attributes"]["http.url"]
        command = eventually(lambda: receiver.find(parent_id=request["span_id"], name="command PostMessage"), 30, "the command's span")[0]
        assert command["trace_id"] == request["trace_id"] and command["attributes"]["chronicle.correlation_id"] == "trace-me-2"
        commit = eventually(lambda: receiver.find(parent_id=command["span_id"], name="group commit"), 30, "the group commit's span")[0]
        assert commit["trace_id"] == request["trace_id"] and "trace-me-2" in commit["attributes"]["chronicle.correlation_ids"]

        assert eventually(lambda: receiver.find(name="projection batch", process="projections"), 30, "a projector batch's span")
        reply = eventually(lambda: receiver.find(name="assistant reply"), 30, "the assistant's span")[0]
        assert reply["attributes"]["chronicle.reply.outcome"] == "completed" and reply["attributes"]["chronicle.correlation_id"]
        conversion = eventually(lambda: receiver.find(name="conversion"), 60, "the conversion's span")[0]
        assert conversion["attributes"]["chronicle.conversion.type"] == "html"
        assert conversion["attributes"]["chronicle.conversion.outcome"] == "completed"
    finally:
        server.stop()
        receiver.close()
    access = [json.loads(line) for line in server.log_path.read_text().splitlines() if '"event":"request"' in line]
    line = next(line for line in access if line["correlation_id"] == "trace-me-2")
    assert line["trace_id"] == request["trace_id"]


def test_without_an_endpoint_no_request_tracing_is_installed(tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert request_tracing(Settings.from_env(tmp_path)) == []
