"""OTLP traces: a real OTLP/HTTP receiver (a tiny HTTP server here) gets a span per request, with
the upstream fetch as a child span of the request that started it."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import TestImages
from tests.ops.conftest import pull
from tests.support.mirror import MirrorProcess


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        _Receiver.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_per_request_with_upstream_children(mirror_process, origin, images: TestImages) -> None:  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        mirror: MirrorProcess = mirror_process(
            {origin.host: origin.url},
            ["--otlp-endpoint", endpoint, "--admin-listen", ""],
            env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        with mirror.client() as client:
            pull(client, images.app)
        spans = []
        for _ in range(100):
            spans = [
                span
                for body in list(_Receiver.bodies)
                for resource in ExportTraceServiceRequest.FromString(body).resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]
            exported = {s.span_id for s in spans}
            upstream = [s for s in spans if s.name == "upstream blob GET"]
            # A parent ends after its children: it may come in a later export batch.
            if len(upstream) >= 4 and all(s.parent_span_id in exported for s in upstream):
                break
            time.sleep(0.1)
        by_id = {s.span_id: s for s in spans}
        upstream = [s for s in spans if s.name == "upstream blob GET"]
        assert len(upstream) == 1 + len(images.app.layers)
        assert all(by_id[s.parent_span_id].name == "GET blob" for s in upstream)
        assert any(s.name == "GET manifest" for s in spans)
    finally:
        server.shutdown()
