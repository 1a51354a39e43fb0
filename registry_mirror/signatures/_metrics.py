"""Signature policy instruments (the exporter adds `_total` to counters)."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("registry_mirror.signatures")

verdicts = meter.create_counter(
    "registry_mirror_signature_verdicts",
    description="Manifests of policy-governed repositories answered, by policy, result"
    " (verified, refused, warned) and whether the verdict came from the cache",
)
verifications = meter.create_counter(
    "registry_mirror_signature_verifications",
    description="Signature checks actually run (verdict cache misses), by policy and result",
)
fetch_failures = meter.create_counter(
    "registry_mirror_signature_fetch_failures",
    description="Signature lookups that failed (upstream unreachable, bad answers), by upstream and stage",
)
blob_refusals = meter.create_counter(
    "registry_mirror_signature_blob_refusals",
    description="Blob requests refused because they belong to a refused image, by policy",
)
