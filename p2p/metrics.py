"""OpenTelemetry instruments of the p2p package, declared through the API only.

The application that embeds us installs the SDK and an exporter; without one these are no-ops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

meter = metrics.get_meter("registry_mirror.p2p")

# Client side: how long each tracker call takes, labelled by `operation` and `outcome`.
tracker_request_duration = meter.create_histogram(
    "registry_mirror_tracker_request_duration_seconds",
    unit="s",
    description="Latency of requests to the p2p tracker, by operation and outcome",
)

# Tracker side.
tracker_peers_known = meter.create_gauge(
    "registry_mirror_tracker_peers_known",
    description="Live peers the tracker knows (heartbeat within the TTL)",
)
tracker_catalog_ready_share = meter.create_gauge(
    "registry_mirror_tracker_catalog_ready_share",
    description="Share of live peers holding every blob of a catalog's newest serial, by catalog and serial",
)
tracker_leases = meter.create_counter(
    "registry_mirror_tracker_leases_total",
    description="Seed lease requests, by result: granted, renewed or waited",
)
tracker_bad_piece_reports = meter.create_counter(
    "registry_mirror_tracker_bad_piece_reports_total",
    description="Reports that a peer served a piece failing its hash check, by outcome: shown (a failed"
    " piece the tracker could check), counted (one reporter's word) or rate_limited",
)
tracker_peers_excluded = meter.create_counter(
    "registry_mirror_tracker_peers_excluded_total",
    description="Peers left out of one digest's lookups after bad-piece reports",
)
tracker_piece_hash_conflicts = meter.create_counter(
    "registry_mirror_tracker_piece_hash_conflicts_total",
    description="Piece hash publications that disagreed with stored ones, by outcome: refused (the"
    " seed contradicted itself) or replaced (an earlier seed's hashes were superseded)",
)
tracker_piece_hash_resets = meter.create_counter(
    "registry_mirror_tracker_piece_hash_resets_total",
    description="Piece hash records withdrawn by a seed whose fill failed verification",
)
tracker_identity_refusals = meter.create_counter(
    "registry_mirror_tracker_identity_refusals_total",
    description="Requests refused because the caller acted for another peer id, by route",
)
tracker_records_refused = meter.create_counter(
    "registry_mirror_tracker_records_refused_total",
    description="Announced blobs refused because their peer reached max_records_per_peer",
)

# -- the peer data plane (mirror side) --------------------------------------------------------
pieces_received = meter.create_counter(
    "registry_mirror_p2p_pieces_received",
    description="Pieces downloaded from peers and verified, by where they were received into (into: file | buffer)",
)
pieces_served = meter.create_counter("registry_mirror_p2p_pieces_served", description="Pieces uploaded to peers")
peer_bytes_served = meter.create_counter(
    "registry_mirror_p2p_upload_bytes", description="Bytes uploaded to other peers"
)
bad_pieces = meter.create_counter(
    "registry_mirror_p2p_bad_pieces", description="Pieces from peers that failed their hash check"
)
peers_excluded = meter.create_counter(
    "registry_mirror_p2p_peers_excluded", description="Peers dropped from a download, by reason"
)
lease_waits = meter.create_counter(
    "registry_mirror_p2p_lease_waits", description="Fills that waited for another mirror's origin fetch"
)
p2p_fills = meter.create_counter(
    "registry_mirror_p2p_fills", description="Fills by how the bytes came: seed, peer, origin fallback, takeover"
)
stale_piece_hashes = meter.create_counter(
    "registry_mirror_p2p_stale_piece_hashes",
    description="Bad pieces that were judged against withdrawn or replaced piece hashes: nobody accused",
)
origin_reread_bytes = meter.create_counter(
    "registry_mirror_p2p_origin_reread_bytes",
    description="Bytes a takeover read from the origin again and dropped: the origin ignored its Range",
)
upload_throttled_seconds = meter.create_counter(
    "registry_mirror_p2p_upload_throttled_seconds",
    description="Seconds piece uploads waited for the upload bandwidth cap (p2p.upload_bandwidth)",
)
uploads_refused = meter.create_counter(
    "registry_mirror_p2p_uploads_refused", description="Piece requests refused because the upload cap was reached"
)


_peer_counts: list[Callable[[], int]] = []


def register_peer_count(source: Callable[[], int]) -> None:
    _peer_counts.append(source)


def _observe_peers(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(source()) for source in _peer_counts]


meter.create_observable_gauge(
    "registry_mirror_p2p_peers_known", callbacks=[_observe_peers], description="Peers the tracker named recently"
)
