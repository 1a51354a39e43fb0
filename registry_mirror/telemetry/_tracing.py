"""Optional OTLP traces: a span per request, with child spans around upstream fetches.

Nothing is installed unless an endpoint is configured: without a TracerProvider the API's tracer
is a no-op, so `upstream_span` costs a function call on the hot path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

tracer = trace.get_tracer("registry_mirror")
_installed: Any = None


def install_tracing(endpoint: str, service_name: str = "registry-mirror") -> bool:
    """Export spans over OTLP/HTTP to `endpoint` (http://collector:4318). "" installs nothing."""
    global _installed
    if not endpoint or _installed is not None:
        return _installed is not None
    # Imported here: the exporter is an optional dependency, needed only with an endpoint.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    _installed = provider
    return True


def shutdown_tracing() -> None:
    """Flush spans still queued (on server exit)."""
    if _installed is not None:
        _installed.shutdown()


@contextlib.contextmanager
def upstream_span(name: str, **attributes: str | int) -> Iterator[None]:
    """A child span of the current request around one upstream or peer call."""
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        yield


class TracingMiddleware:
    """One SERVER span per HTTP request, named by method and route, with the access-log fields."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        with tracer.start_as_current_span(f"{scope['method']} registry-mirror", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            try:
                await self.app(scope, receive, send_and_watch)
            finally:
                info = scope.get("registry_mirror") or {}
                if route := info.get("route"):
                    span.update_name(f"{scope['method']} {route}")
                for key in ("upstream", "repository", "digest", "source", "error"):
                    if info.get(key):
                        span.set_attribute(f"registry_mirror.{key}", str(info[key]))
                span.set_attribute("http.response.status_code", status["code"])
                if status["code"] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
