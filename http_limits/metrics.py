"""Instruments through the OpenTelemetry API only (the process installs the SDK)."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("http_limits")

header_refusals = meter.create_counter(
    "registry_mirror_header_limit_refusals",
    description="Connections refused for headers over the size limit (431), not sent in time (408), or"
    " over max_connections_per_client (503, reason too_many_connections), by listener",
)
