"""The cache's own small exception types; the front end translates them at one boundary."""

from __future__ import annotations


class CacheError(Exception):
    """Base of everything nvme_cache raises on purpose."""


class BlobNotFound(CacheError):
    """The blob is not (or no longer) in the cache."""


class RangeNotSatisfiable(CacheError):
    def __init__(self, start: int, size: int) -> None:
        super().__init__(f"range start {start} is beyond the blob size {size}")
        self.start = start
        self.size = size


class FillFailed(CacheError):
    """The fill a reader was attached to failed; the reader's body must be aborted."""


class VerificationFailed(FillFailed):
    """The bytes did not hash to the expected digest or size."""


class SourceFailed(FillFailed):
    """The fill's source (origin, peer, delta) broke or refused."""


class FillUnavailable(FillFailed):
    """The fill degraded to pass-through and can no longer serve bytes this reader needs."""


class BlobVanished(BlobNotFound, FillFailed):
    """A cached file disappeared under a reader (removed or quarantined): its body is aborted."""
