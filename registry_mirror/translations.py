"""Lower-level exceptions -> OCI errors, registered once in errors.py's table."""

from __future__ import annotations

from nvme_cache import BlobNotFound, FillFailed, RangeNotSatisfiable, VerificationFailed
from oci import UnsatisfiableRange
from registry_mirror.errors import ErrorCode, OCIError, register_translation
from registry_mirror.upstream import (
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTooLarge,
    UpstreamTooManyRequests,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)


def upstream_error(exc: UpstreamError, not_found: ErrorCode = ErrorCode.NAME_UNKNOWN) -> OCIError:
    """The OCI error for an upstream failure; `not_found` says what a 404 means here."""
    if isinstance(exc, UpstreamNotFound):
        code = exc.code if exc.code in ErrorCode.__members__ and exc.code.endswith("UNKNOWN") else not_found
        return OCIError(code, exc.message)
    if isinstance(exc, UpstreamUnauthorized):
        return OCIError(ErrorCode.UNAUTHORIZED, "the upstream registry refused the mirror's credentials")
    if isinstance(exc, UpstreamDenied):
        return OCIError(ErrorCode.DENIED, exc.message)
    if isinstance(exc, UpstreamTooManyRequests):
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
        return OCIError(ErrorCode.TOOMANYREQUESTS, exc.message, headers=headers)
    if isinstance(exc, UpstreamTooLarge):
        return OCIError(ErrorCode.MANIFEST_INVALID, exc.message)
    if isinstance(exc, UpstreamUnavailable):
        return OCIError(ErrorCode.UPSTREAM_UNAVAILABLE, exc.message)
    return OCIError(ErrorCode.UPSTREAM_INVALID, exc.message)


def fill_error(exc: FillFailed, not_found: ErrorCode = ErrorCode.BLOB_UNKNOWN) -> OCIError:
    """A fill that failed before its first byte: answer with what its source said."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UpstreamError):
            return upstream_error(cause, not_found)
        if isinstance(cause, VerificationFailed):
            return OCIError(ErrorCode.UPSTREAM_INVALID, "upstream bytes did not match the digest")
        cause = cause.__cause__
    return OCIError(ErrorCode.UPSTREAM_UNAVAILABLE, "the blob could not be fetched")


register_translation(UpstreamError, upstream_error)
register_translation(FillFailed, fill_error)
register_translation(BlobNotFound, lambda exc: OCIError(ErrorCode.BLOB_UNKNOWN))


def range_invalid(exc: RangeNotSatisfiable | UnsatisfiableRange) -> OCIError:
    return OCIError(ErrorCode.RANGE_INVALID, headers={"Content-Range": f"bytes */{exc.size}"})


register_translation(RangeNotSatisfiable, range_invalid)  # the cache's
register_translation(UnsatisfiableRange, range_invalid)  # a parsed Range against a known size
