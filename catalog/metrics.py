"""OpenTelemetry instruments of the catalog package (API only; the app installs the SDK)."""
from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("registry_mirror.catalog")

verifications = meter.create_counter(
    "catalog_verifications", unit="1", description="Catalog envelope verifications, by result")
delta_rebuilds = meter.create_counter(
    "catalog_delta_rebuilds", unit="1", description="Blobs rebuilt from deltas, by result")
delta_rebuilt_bytes = meter.create_counter(
    "catalog_delta_rebuilt_bytes", unit="By", description="Bytes of verified blobs rebuilt from deltas")
