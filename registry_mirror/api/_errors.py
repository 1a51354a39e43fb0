"""The one OCI error type, its status table, and the boundary that translates other errors.

    Exception
     └── OCIError(code, message, detail, headers)   status comes from the code, registered once

Lower packages raise their own small exception types; `_translations` maps each to an `OCIError`
in one explicit table, and `to_response_parts` renders it as `{"errors": [...]}`.

Codes beyond the distribution spec's list (clients treat unknown codes as UNKNOWN, so adding
them is allowed by the spec):
- UNKNOWN 500: an exception nobody translated; its text is never sent to the client.
- NOT_FOUND 404: a path that is no distribution endpoint. 404 makes containerd try its next host.
- RANGE_INVALID 416: an unsatisfiable Range on a blob GET (RFC 9110 15.5.17); the error carries
  `Content-Range: bytes */<size>`.
- UPSTREAM_UNAVAILABLE 503: the origin (and every peer) could not be reached in time.
- UPSTREAM_INVALID 502: the origin answered, but with something unusable (bad status, wrong digest).
A 404 or 5xx from a mirror sends containerd to its next host for that one request, so fail fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from oci.digest import InvalidDigest

JSON_CONTENT_TYPE: Final = "application/json"
API_VERSION_HEADER: Final = ("Docker-Distribution-API-Version", "registry/2.0")


class ErrorCode(StrEnum):
    # distribution-spec "Error Codes", code-1 .. code-14
    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    # ours, see the module docstring
    UNKNOWN = "UNKNOWN"
    NOT_FOUND = "NOT_FOUND"
    RANGE_INVALID = "RANGE_INVALID"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    UPSTREAM_INVALID = "UPSTREAM_INVALID"


@dataclass(frozen=True)
class CodeSpec:
    status: int
    message: str


# The single place a code gets its HTTP status (statuses as in CNCF distribution's registry).
CODES: Final[Mapping[ErrorCode, CodeSpec]] = {
    ErrorCode.BLOB_UNKNOWN: CodeSpec(404, "blob unknown to registry"),
    ErrorCode.BLOB_UPLOAD_INVALID: CodeSpec(400, "blob upload invalid"),
    ErrorCode.BLOB_UPLOAD_UNKNOWN: CodeSpec(404, "blob upload unknown to registry"),
    ErrorCode.DIGEST_INVALID: CodeSpec(400, "provided digest did not match uploaded content"),
    ErrorCode.MANIFEST_BLOB_UNKNOWN: CodeSpec(400, "manifest references a manifest or blob unknown to registry"),
    ErrorCode.MANIFEST_INVALID: CodeSpec(400, "manifest invalid"),
    ErrorCode.MANIFEST_UNKNOWN: CodeSpec(404, "manifest unknown to registry"),
    ErrorCode.NAME_INVALID: CodeSpec(400, "invalid repository name"),
    ErrorCode.NAME_UNKNOWN: CodeSpec(404, "repository name not known to registry"),
    ErrorCode.SIZE_INVALID: CodeSpec(400, "provided length did not match content length"),
    ErrorCode.UNAUTHORIZED: CodeSpec(401, "authentication required"),
    ErrorCode.DENIED: CodeSpec(403, "requested access to the resource is denied"),
    ErrorCode.UNSUPPORTED: CodeSpec(405, "the operation is unsupported"),
    ErrorCode.TOOMANYREQUESTS: CodeSpec(429, "too many requests"),
    ErrorCode.UNKNOWN: CodeSpec(500, "unknown error"),
    ErrorCode.NOT_FOUND: CodeSpec(404, "not a distribution API endpoint"),
    ErrorCode.RANGE_INVALID: CodeSpec(416, "requested range not satisfiable"),
    ErrorCode.UPSTREAM_UNAVAILABLE: CodeSpec(503, "upstream registry unavailable"),
    ErrorCode.UPSTREAM_INVALID: CodeSpec(502, "upstream registry returned an invalid response"),
}


class OCIError(Exception):
    def __init__(
        self,
        code: ErrorCode | str,
        message: str | None = None,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = ErrorCode(code)  # an unregistered code is a bug: ValueError here
        self.message = message if message is not None else CODES[self.code].message
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{self.code}: {self.message}")

    @property
    def status(self) -> int:
        return CODES[self.code].status

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.detail is not None:  # detail is OPTIONAL in the spec
            entry["detail"] = self.detail
        return entry


def error_body(errors: OCIError | Iterable[OCIError]) -> bytes:
    items = [errors] if isinstance(errors, OCIError) else list(errors)
    return json.dumps({"errors": [e.to_json() for e in items]}, default=str).encode()


def to_response_parts(err: OCIError) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the error response, for any HTTP layer."""
    body = error_body(err)
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        API_VERSION_HEADER[0]: API_VERSION_HEADER[1],
        **err.headers,
    }
    return err.status, headers, body


# --- the errors this module knows itself; lower layers' types are in _translations' table ----------


def translate(exc: BaseException) -> OCIError:
    """The OCI error for `exc` as far as this module knows: an OCIError itself, a bad digest, else
    UNKNOWN (500). `_translations.translate` consults the lower layers' table first."""
    if isinstance(exc, OCIError):
        return exc
    if isinstance(exc, InvalidDigest):
        return OCIError(ErrorCode.DIGEST_INVALID, detail={"reason": str(exc)})
    # The exception text may hold paths or upstream URLs: keep it in logs, not in the body.
    return OCIError(ErrorCode.UNKNOWN)
