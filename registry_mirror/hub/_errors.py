"""The error answer of the model hub routes (`/hf`, `/modelscope`), in the hubs' own convention:
the status, `X-Error-Code` and `X-Error-Message` headers (what huggingface_hub and the ModelScope
client read to name the error), and a JSON body `{"error": "<message>"}` for anything else.

The message is fixed text for the client; what went wrong in detail goes to the log, never into
the answer (an exception's text can carry an origin's URL or answer)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

UPSTREAM_UNAVAILABLE = "UpstreamUnavailable"
UPSTREAM_ERROR = "UpstreamError"
ENTRY_NOT_FOUND = "EntryNotFound"
RANGE_NOT_SATISFIABLE = "RangeNotSatisfiable"


def hub_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    header_message = message[:200].encode("ascii", "replace").decode()
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={**(headers or {}), "X-Error-Code": code, "X-Error-Message": header_message},
    )
