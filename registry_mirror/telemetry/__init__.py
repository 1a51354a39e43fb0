"""What the mirror reports: Prometheus instruments, the OpenTelemetry provider, traces and the
access log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.telemetry._access_log import AccessLog as AccessLog
    from registry_mirror.telemetry._provider import install_metrics as install_metrics
    from registry_mirror.telemetry._provider import metrics_endpoint as metrics_endpoint
    from registry_mirror.telemetry._tracing import TracingMiddleware as TracingMiddleware
    from registry_mirror.telemetry._tracing import install_tracing as install_tracing
    from registry_mirror.telemetry._tracing import shutdown_tracing as shutdown_tracing
    from registry_mirror.telemetry._tracing import upstream_span as upstream_span

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_access_log": ["AccessLog"],
        "_provider": ["install_metrics", "metrics_endpoint"],
        "_tracing": ["TracingMiddleware", "install_tracing", "shutdown_tracing", "upstream_span"],
    },
)
