"""Webhook instruments."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("registry_mirror.webhook")

reviews = meter.create_counter(
    "registry_mirror_webhook_reviews",
    description="AdmissionReviews answered, by result: injected, unchanged, skipped, invalid",
)
review_seconds = meter.create_histogram(
    "registry_mirror_webhook_review_seconds", unit="s", description="Time to answer one AdmissionReview"
)
