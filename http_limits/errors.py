"""The error body of the project's JSON control APIs (admin, tracker, peer listener):
`{"error": "<fixed message>", "field": "<input at fault>"}`, `field` only when one input is to blame.

The message is written for the client and never carries exception text (that goes to the log):
an exception's text can hold paths, peer addresses or an origin's answer. The distribution API
(`/v2`) answers in the OCI shape instead (registry_mirror.api._errors), the model hub routes in the
hubs' own (registry_mirror.hub._errors). docs/architecture.md lists the three."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def error_response(
    status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route 404, wrong method 405) in the same shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
# For `Starlette(exception_handlers=...)`; a copy extended with an app's own handlers also fits.
EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {HTTPException: http_exception_handler}
