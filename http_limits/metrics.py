"""Instruments through the OpenTelemetry API only (the process installs the SDK)."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("http_limits")

header_refusals = meter.create_counter(
    "registry_mirror_header_limit_refusals",
    description="Connections refused for headers over the size limit (431) or not sent in time (408), by listener",
)
