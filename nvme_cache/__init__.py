"""nvme_cache: a crash-safe, content-addressed blob cache that serves readers while it fills."""

from nvme_cache.errors import (
    BlobNotFound,
    BlobVanished,
    CacheError,
    FillFailed,
    FillUnavailable,
    RangeNotSatisfiable,
    SourceFailed,
    VerificationFailed,
)
from nvme_cache.fileio import DirectWriter, aligned_buffer
from nvme_cache.inflight import PIECE_SIZE, Fill, FillSource, Landed, RangeBody, RangeSource, SourceStream, ranges_of
from nvme_cache.integrity import BlobCorrupt
from nvme_cache.lock import CacheInUse, CacheLock
from nvme_cache.readalong import LiveSegment
from nvme_cache.refs import Ref, Refs
from nvme_cache.sendfile import (
    FileSegment,
    ZeroCopyMiddleware,
    ZeroCopySender,
    push_segment,
    read_segment,
    send_segment,
    sender_of,
)
from nvme_cache.store import BlobInfo, BlobStore, CachedBlob, FillProgress, VerifyReport
from oci.digest import Digest, InvalidDigest, Verifier

__all__ = [
    "BlobCorrupt",
    "BlobInfo",
    "BlobNotFound",
    "BlobVanished",
    "BlobStore",
    "CacheError",
    "CacheInUse",
    "CacheLock",
    "CachedBlob",
    "Digest",
    "DirectWriter",
    "Fill",
    "FillFailed",
    "FillProgress",
    "FillSource",
    "FillUnavailable",
    "Landed",
    "LiveSegment",
    "FileSegment",
    "PIECE_SIZE",
    "RangeBody",
    "Ref",
    "Refs",
    "RangeSource",
    "ZeroCopyMiddleware",
    "ZeroCopySender",
    "aligned_buffer",
    "push_segment",
    "read_segment",
    "send_segment",
    "sender_of",
    "ranges_of",
    "InvalidDigest",
    "RangeNotSatisfiable",
    "SourceFailed",
    "SourceStream",
    "VerificationFailed",
    "Verifier",
    "VerifyReport",
]
