from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oci.digest import Digest, InvalidDigest
from registry_mirror.api import translate as table_translate
from registry_mirror.api._errors import (
    CODES,
    ErrorCode,
    OCIError,
    error_body,
    to_response_parts,
    translate,
)
from registry_mirror.upstream import UpstreamUnavailable

SPEC_STATUSES = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "RANGE_INVALID": 416,
    "UPSTREAM_UNAVAILABLE": 503,
    "UPSTREAM_INVALID": 502,
    "UNKNOWN": 500,
    "NOT_FOUND": 404,
}


class _OriginGone(UpstreamUnavailable):
    """A subclass the translation table does not list: it takes its nearest listed base."""


def _render(exc: BaseException) -> Response:
    """The /v2 boundary (`_dispatch`): the table's OCI error, rendered as OCI error JSON."""
    status, headers, body = to_response_parts(table_translate(exc))
    return Response(content=body, status_code=status, headers=headers)


def test_every_code_has_exactly_one_status() -> None:
    assert set(CODES) == set(ErrorCode)
    assert {str(code): spec.status for code, spec in CODES.items()} == SPEC_STATUSES


@pytest.mark.parametrize("code", list(ErrorCode))
def test_status_and_default_message_come_from_the_table(code: ErrorCode) -> None:
    err = OCIError(code)
    assert err.status == SPEC_STATUSES[str(code)]
    assert err.message == CODES[code].message and err.message


def test_code_may_be_given_as_string_and_unknown_codes_are_refused() -> None:
    assert OCIError("BLOB_UNKNOWN").code is ErrorCode.BLOB_UNKNOWN
    with pytest.raises(ValueError):
        OCIError("NO_SUCH_CODE")


def test_error_body_shape() -> None:
    body = json.loads(error_body(OCIError(ErrorCode.BLOB_UNKNOWN, "gone", {"digest": "sha256:x"})))
    assert body == {"errors": [{"code": "BLOB_UNKNOWN", "message": "gone", "detail": {"digest": "sha256:x"}}]}


def test_error_body_omits_absent_detail_and_takes_many_errors() -> None:
    body = json.loads(error_body([OCIError("DENIED"), OCIError("NAME_INVALID", detail="bad")]))
    assert body == {
        "errors": [
            {"code": "DENIED", "message": CODES[ErrorCode.DENIED].message},
            {"code": "NAME_INVALID", "message": CODES[ErrorCode.NAME_INVALID].message, "detail": "bad"},
        ]
    }


def test_error_body_survives_non_json_detail() -> None:
    digest = Digest.from_bytes(b"")
    body = json.loads(error_body(OCIError("BLOB_UNKNOWN", detail={"digest": digest})))
    assert body["errors"][0]["detail"] == {"digest": str(digest)}


def test_response_parts_carry_status_content_type_and_error_headers() -> None:
    err = OCIError(ErrorCode.RANGE_INVALID, headers={"Content-Range": "bytes */10"})
    status, headers, body = to_response_parts(err)
    assert status == 416
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Range"] == "bytes */10"
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert json.loads(body)["errors"][0]["code"] == "RANGE_INVALID"


def test_translate_passes_oci_errors_through() -> None:
    err = OCIError("DENIED")
    assert translate(err) is err


def test_invalid_digest_translates_to_digest_invalid() -> None:
    err = translate(InvalidDigest("bad hex"))
    assert (err.code, err.status) == (ErrorCode.DIGEST_INVALID, 400)


def test_an_unsatisfiable_range_translates_to_416_with_the_size() -> None:
    from nvme_cache import RangeNotSatisfiable
    from oci import UnsatisfiableRange

    for exc in (UnsatisfiableRange(10), RangeNotSatisfiable(12, 10)):
        error = table_translate(exc)
        assert (error.code, error.status, error.headers) == ("RANGE_INVALID", 416, {"Content-Range": "bytes */10"})


def test_untranslated_errors_become_unknown_without_leaking_text() -> None:
    err = translate(RuntimeError("/var/cache/secret/path"))
    assert (err.code, err.status) == (ErrorCode.UNKNOWN, 500)
    assert b"secret" not in error_body(err)


def test_the_table_applies_to_subclasses() -> None:
    err = table_translate(_OriginGone(None, None, "origin down"))
    assert (err.code, err.status) == (ErrorCode.UPSTREAM_UNAVAILABLE, 503)


def _app() -> Starlette:
    async def raise_oci(request: Request) -> Response:
        raise OCIError(ErrorCode.TOOMANYREQUESTS, headers={"Retry-After": "1"})

    async def raise_lower(request: Request) -> Response:
        raise _OriginGone(None, None, "origin down")

    async def raise_digest(request: Request) -> Response:
        Digest.parse("sha256:nothex")
        return Response()

    routes = [Route("/oci", raise_oci), Route("/lower", raise_lower), Route("/digest", raise_digest)]
    handled = (OCIError, UpstreamUnavailable, InvalidDigest)  # Starlette re-raises what reaches `Exception`
    return Starlette(routes=routes, exception_handlers=dict.fromkeys(handled, lambda request, exc: _render(exc)))


async def test_the_boundary_renders_oci_and_translated_errors() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/oci")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/json"
        assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"

        response = await client.get("/lower")
        assert response.status_code == 503
        assert response.json()["errors"][0] == {"code": "UPSTREAM_UNAVAILABLE", "message": "origin down"}

        response = await client.get("/digest")
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "DIGEST_INVALID"
