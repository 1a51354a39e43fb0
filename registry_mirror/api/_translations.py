"""Lower-level exceptions -> OCI errors: one explicit table, read by `translate` (the API's error
path, registry_mirror.api._dispatch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nvme_cache import BlobNotFound, FillFailed, RangeNotSatisfiable, VerificationFailed
from oci import UnsatisfiableRange
from registry_mirror.api import _errors as errors
from registry_mirror.api._errors import ErrorCode, OCIError
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


def _range_invalid(exc: RangeNotSatisfiable | UnsatisfiableRange) -> OCIError:
    return OCIError(ErrorCode.RANGE_INVALID, headers={"Content-Range": f"bytes */{exc.size}"})


# Failures of the layers below the API (upstream clients, the cache), by type; a subclass takes its
# nearest listed base. Anything else goes to errors.translate (OCIError, InvalidDigest, UNKNOWN).
_TABLE: dict[type[BaseException], Callable[[Any], OCIError]] = {
    UpstreamError: upstream_error,
    FillFailed: fill_error,
    BlobNotFound: lambda exc: OCIError(ErrorCode.BLOB_UNKNOWN),
    RangeNotSatisfiable: _range_invalid,  # the cache's
    UnsatisfiableRange: _range_invalid,  # a parsed Range against a known size
}


def translate(exc: BaseException) -> OCIError:
    """The OCI error the API answers for `exc` (exception text never reaches the body)."""
    if not isinstance(exc, OCIError):
        for cls in type(exc).__mro__:
            fn = _TABLE.get(cls)
            if fn is not None:
                return fn(exc)
    return errors.translate(exc)
