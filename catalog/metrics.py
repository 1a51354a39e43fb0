"""OpenTelemetry instruments of the catalog package (API only; the app installs the SDK)."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("registry_mirror.catalog")

verifications = meter.create_counter(
    "catalog_verifications", unit="1", description="Catalog envelope verifications, by result"
)
delta_rebuilds = meter.create_counter(
    "catalog_delta_rebuilds", unit="1", description="Blobs rebuilt from deltas, by result"
)
delta_rebuilt_bytes = meter.create_counter(
    "catalog_delta_rebuilt_bytes", unit="By", description="Bytes of verified blobs rebuilt from deltas"
)

# ---- mirror side: poller, prefetch, delta source -------------------------------------------------
serial = meter.create_gauge("catalog_serial", unit="1", description="Serial of the active catalog, by catalog name")
refusals = meter.create_counter("catalog_refusals", unit="1", description="Published catalogs refused, by reason")
activations = meter.create_counter(
    "catalog_activations", unit="1", description="Catalogs made active, by kind (update, rollback, restore)"
)
poll_errors = meter.create_counter(
    "catalog_poll_errors", unit="1", description="Polls that could not fetch the catalog artifact"
)
prefetch_blobs = meter.create_counter(
    "catalog_prefetch_blobs", unit="1", description="Catalog blobs prefetched, by result (fetched, cached, failed)"
)
prefetch_bytes = meter.create_counter(
    "catalog_prefetch_bytes", description="Bytes of catalog blobs made present by a prefetch fill"
)
delta_bytes_saved = meter.create_counter(
    "catalog_delta_saved_bytes",
    description="Blob bytes not fetched in full because a delta rebuilt them (target size - delta size)",
)
