"""Policy instruments, declared through the OpenTelemetry API only (the app installs the SDK)."""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("registry_mirror.policy")

blocked_requests = meter.create_counter(
    "registry_mirror_blocked_requests", description="Requests refused by a blocklist rule, by upstream and rule"
)
rate_limited_requests = meter.create_counter(
    "registry_mirror_rate_limited_requests", description="Requests refused with 429, by limit"
)
unauthorized_requests = meter.create_counter(
    "registry_mirror_unauthorized_requests", description="Requests refused for a missing or wrong client token"
)
blocklist_reloads = meter.create_counter(
    "registry_mirror_blocklist_reloads", description="Blocklist reloads from the config file, by result"
)
upstream_fetches_in_flight = meter.create_up_down_counter(
    "registry_mirror_upstream_fetches_in_flight", description="Origin blob fetches holding a concurrency slot"
)
upstream_throttle_seconds = meter.create_counter(
    "registry_mirror_upstream_throttle_seconds",
    description="Seconds origin fetches waited for a concurrency slot or bandwidth, by upstream and cap",
)
gate_refusals = meter.create_counter(
    "registry_mirror_policy_gate_refusals",
    description="Requests the policy gate refused before any handler, by route mount and error code",
)
