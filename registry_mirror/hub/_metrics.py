"""Hub (Hugging Face, ModelScope) instruments; bytes served are counted on the front end's
`registry_mirror_blob_bytes` with a `kind` attribute."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("registry_mirror.hub")

upstream_requests = meter.create_counter(
    "registry_mirror_hub_upstream_requests", description="Requests sent to a model hub origin, by hub and kind"
)
stale_revisions_served = meter.create_counter(
    "registry_mirror_hub_stale_revisions_served",
    description="Revision -> commit answers served stale while the hub origin failed",
)
auth_checks = meter.create_counter(
    "registry_mirror_hub_auth_checks", description="Upstream access checks for cached hub files, by result"
)
verification_failures = meter.create_counter(
    "registry_mirror_hub_verification_failures", description="Hub files whose bytes did not match size or hash"
)
