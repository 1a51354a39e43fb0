"""nvme_cache: a crash-safe, content-addressed blob cache that serves readers while it fills."""

from nvme_cache.digest import Digest, InvalidDigest, Verifier
from nvme_cache.errors import (
    BlobNotFound,
    CacheError,
    FillFailed,
    FillUnavailable,
    RangeNotSatisfiable,
    SourceFailed,
    VerificationFailed,
)
from nvme_cache.inflight import Fill, FillSource, SourceStream
from nvme_cache.store import BlobInfo, BlobStore, CachedBlob, VerifyReport

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "CacheError",
    "CachedBlob",
    "Digest",
    "Fill",
    "FillFailed",
    "FillSource",
    "FillUnavailable",
    "InvalidDigest",
    "RangeNotSatisfiable",
    "SourceFailed",
    "SourceStream",
    "VerificationFailed",
    "Verifier",
    "VerifyReport",
]
