"""What the mirror reports: Prometheus instruments, the OpenTelemetry provider, traces and the
access log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.telemetry._access_log import AccessLog as AccessLog
    from registry_mirror.telemetry._provider import install_metrics as install_metrics
    from registry_mirror.telemetry._provider import metrics_endpoint as metrics_endpoint
    from registry_mirror.telemetry._tracing import TracingMiddleware as TracingMiddleware
    from registry_mirror.telemetry._tracing import install_tracing as install_tracing
    from registry_mirror.telemetry._tracing import shutdown_tracing as shutdown_tracing
    from registry_mirror.telemetry._tracing import upstream_span as upstream_span

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_access_log": ("AccessLog",),
        "_provider": (
            "install_metrics",
            "metrics_endpoint",
        ),
        "_tracing": (
            "TracingMiddleware",
            "install_tracing",
            "shutdown_tracing",
            "upstream_span",
        ),
    },
)
