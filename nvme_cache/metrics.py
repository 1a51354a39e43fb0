"""OpenTelemetry instruments of the cache, declared through the API only (the app installs the SDK)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

meter = metrics.get_meter("nvme_cache")

hits = meter.create_counter("registry_mirror_cache_hits", description="Blob lookups answered from the cache")
misses = meter.create_counter("registry_mirror_cache_misses", description="Blob lookups that needed a fill")
bytes_read = meter.create_counter("registry_mirror_cache_read_bytes", description="Bytes read from cache files")
bytes_written = meter.create_counter(
    "registry_mirror_cache_written_bytes", description="Bytes written by fills (cached or not)"
)
fills_in_flight = meter.create_up_down_counter("registry_mirror_cache_fills_in_flight", description="Fills running now")
fills = meter.create_counter("registry_mirror_cache_fills", description="Fills finished, by result")
evictions = meter.create_counter("registry_mirror_evictions", description="Blobs evicted from the cache")
evicted_bytes = meter.create_counter("registry_mirror_evicted_bytes", description="Bytes evicted")
verification_failures = meter.create_counter(
    "registry_mirror_cache_verification_failures",
    description="Fills whose bytes did not match their digest or size",
)

corrupt_blobs = meter.create_counter(
    "registry_mirror_cache_corrupt_blobs",
    description="Cached files that failed verification and were quarantined, by stage "
    "(first_read, size, restart_scan, scrub, verify)",
)
blobs_verified = meter.create_counter(
    "registry_mirror_cache_blobs_verified", description="Cached blobs hashed and found intact, by stage"
)
scrub_bytes = meter.create_counter(
    "registry_mirror_cache_scrub_bytes", description="Bytes the background scrubber re-hashed"
)
scrub_skipped = meter.create_counter(
    "registry_mirror_cache_scrub_skipped",
    description="Blobs a scrub pass left for a later one (reason: recently_hashed, by a commit or a pass)",
)
scrub_passes = meter.create_counter(
    "registry_mirror_cache_scrub_passes", description="Full passes of the background scrubber over the cache"
)

sendfile_bytes = meter.create_counter(
    "registry_mirror_sendfile_bytes", description="Body bytes sent with sendfile (no copy through Python)"
)
copied_bytes = meter.create_counter(
    "registry_mirror_copied_body_bytes", description="Body bytes sent by copying (TLS, or no zero-copy path)"
)

pushed_bytes = meter.create_counter(
    "registry_mirror_cache_pushed_bytes",
    description="Body bytes sent to read-along clients straight from a fill's receive buffers (no page-cache read)",
)
live_reads = meter.create_counter(
    "registry_mirror_cache_live_reads",
    description="Read-along pushes that ended, by end: limit (all it could take), behind (the socket was full: "
    "the client went on from the file), gone (the client left), caught (its bytes came another way), failed",
)
direct_bytes = meter.create_counter(
    "registry_mirror_cache_direct_written_bytes",
    description="Fill bytes written with O_DIRECT (not copied into the page cache); the rest of bytes_written went buffered",
)

uncacheable = meter.create_counter(
    "registry_mirror_cache_uncacheable_fills",
    description="Fills streamed uncached because no eviction could make room (nothing was evicted)",
)
range_fills = meter.create_counter(
    "registry_mirror_range_fills",
    description="Fills from a range source, by mode: parallel, ranged (one connection), single_stream (no Range support)",
)
range_retries = meter.create_counter(
    "registry_mirror_range_retries", description="Ranges asked for again after their connection broke"
)
demand_fetches = meter.create_counter(
    "registry_mirror_demand_fetches", description="Pieces fetched out of order because a reader waited for them"
)

# Gauges read the live stores through callbacks; a store registers itself on open.
_gauge_sources: list[Callable[[], tuple[int, int]]] = []


def register_usage_source(source: Callable[[], tuple[int, int]]) -> None:
    """`source()` returns (bytes used, capacity)."""
    _gauge_sources.append(source)


def unregister_usage_source(source: Callable[[], tuple[int, int]]) -> None:
    if source in _gauge_sources:
        _gauge_sources.remove(source)


def _observe_used(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(source()[0]) for source in _gauge_sources]


def _observe_capacity(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(source()[1]) for source in _gauge_sources]


meter.create_observable_gauge(
    "registry_mirror_cache_bytes_used", callbacks=[_observe_used], description="Bytes of verified blobs on disk"
)
meter.create_observable_gauge(
    "registry_mirror_cache_bytes_capacity", callbacks=[_observe_capacity], description="The cache size cap"
)
passthrough_own_streams = meter.create_counter(
    "registry_mirror_cache_passthrough_own_streams",
    description="Readers of an uncached (pass-through) blob that got a stream of their own, by reason:"
    " late (joined after its first bytes went by) or behind (read slower than the others)",
)
stalled_clients = meter.create_counter(
    "registry_mirror_stalled_clients",
    description="Responses cut off because the client read nothing for the stall (send) timeout, by path:"
    " sendfile or copy",
)
