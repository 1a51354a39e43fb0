"""Why an origin could not answer, for the one counter of stale answers
(`registry_mirror_stale_answers{route, reason}`) that tags, revisions and listings share."""

from __future__ import annotations

from registry_mirror.telemetry import _metrics as metrics


def failure_reason(status: int | None, message: str) -> str:
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "server_error"
    lowered = message.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    return "unreachable"


def count_stale(route: str, status: int | None, message: str) -> None:
    metrics.stale_answers.add(1, {"route": route, "reason": failure_reason(status, message)})
