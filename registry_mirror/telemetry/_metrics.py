"""Front-end instruments. Names are the Prometheus names other tooling relies on (the exporter
adds `_total` to counters)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

meter = metrics.get_meter("registry_mirror")

# Latency buckets from 1 ms to 5 min: manifests answer in ms, cold 1 GiB blobs take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

blob_bytes = meter.create_counter(
    "registry_mirror_blob_bytes", description="Blob bytes sent to clients, by source and upstream"
)
# Requests are counted in a plain dict and reported through an observable counter: an SDK
# Counter.add with attributes cost ~10% of a manifest HEAD (py-spy), a dict increment nothing.
_request_counts: Counter[tuple[str, str, str]] = Counter()


def count_request(route: str, method: str, status: int) -> None:
    _request_counts[(route, method, str(status))] += 1


def _observe_requests(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(count, {"route": route, "method": method, "status": status})
        for (route, method, status), count in list(_request_counts.items())
    ]


meter.create_observable_counter(
    "registry_mirror_requests", callbacks=[_observe_requests], description="Requests by route, method and status"
)
blob_duration = meter.create_histogram(
    "registry_mirror_blob_duration_seconds",
    description="Time to serve a blob body, by source",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
)
time_to_first_byte = meter.create_histogram(
    "registry_mirror_time_to_first_byte_seconds",
    description="Time from request to the first body byte, by source",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
)
failed_downloads = meter.create_counter(
    "registry_mirror_failed_downloads", description="Blob or manifest requests that failed, by reason"
)
upstream_requests = meter.create_counter(
    "registry_mirror_upstream_requests", description="Requests sent to upstream registries, by kind"
)
origin_body_reads = meter.create_counter(
    "registry_mirror_origin_body_reads",
    description="Reads of origin blob bodies on fill threads (256 KiB each at most), by low_water: yes when "
    "the kernel woke the thread only once that much had arrived (SO_RCVLOWAT)",
)
stale_answers = meter.create_counter(
    "registry_mirror_stale_answers",
    description="Answers from a stale cached resolution (tag, revision, listing) while the origin failed, "
    "by route and reason",
)
cross_repository_confirmations = meter.create_counter(
    "registry_mirror_cross_repository_confirmations",
    description="HEADs asking an upstream whether a repository holds a digest cached for another, by result",
)
cross_repository_refusals = meter.create_counter(
    "registry_mirror_cross_repository_refusals",
    description="Cached digests refused to a repository its upstream did not confirm, by upstream and kind",
)
redirects_refused = meter.create_counter(
    "registry_mirror_redirects_refused",
    description="Origin redirects not followed (to the mirror itself, loopback, link-local), by reason",
)
admin_bad_requests = meter.create_counter(
    "registry_mirror_admin_bad_requests", description="Admin API requests refused with 400, by parameter"
)
via_requests = meter.create_counter(
    "registry_mirror_via_requests",
    description="Requests for an upstream with `via`, by result: via (answered by the other mirror), "
    "fallback (it failed; the origin was asked), skipped (it failed recently; straight to the origin)",
)

# Tasks on the serving loop: a leak (a task per request that never ends) shows as a climb here.
_serving_loops: list[asyncio.AbstractEventLoop] = []


def watch_loop_tasks(loop: asyncio.AbstractEventLoop) -> None:
    _serving_loops.append(loop)


def _observe_tasks(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(len(asyncio.all_tasks(loop))) for loop in _serving_loops if not loop.is_closed()]


meter.create_observable_gauge(
    "registry_mirror_asyncio_tasks", callbacks=[_observe_tasks], description="Tasks alive on the serving event loop"
)
