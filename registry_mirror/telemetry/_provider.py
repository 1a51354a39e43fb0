"""The one place the OpenTelemetry SDK is installed: a MeterProvider whose Prometheus reader is
scraped at GET /metrics on the main listener."""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

_registry: CollectorRegistry | None = None


def install_metrics(service_name: str = "registry-mirror") -> CollectorRegistry:
    """Idempotent: the global provider can be set once per process."""
    global _registry
    if _registry is None:
        registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=registry)
        provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": service_name}))
        metrics.set_meter_provider(provider)
        _registry = registry
    return _registry


async def metrics_endpoint(request: Request) -> Response:
    registry = install_metrics()
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
