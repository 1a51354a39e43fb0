from __future__ import annotations

import hashlib
import posixpath
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from oci import UnsatisfiableRange
from oci.digest import Digest, InvalidDigest
from registry_mirror.api._errors import ErrorCode, OCIError, to_response_parts
from registry_mirror.api._paths import (
    ByteRange,
    DistributionRequest,
    normalize_repository,
    parse_distribution_path,
    parse_range,
    parse_scope,
    validate_repository,
)

DIGEST = Digest.from_bytes(b"layer")
DIGEST512 = Digest.from_bytes(b"layer", "sha512")
ROOT = "/var/cache/registry-mirror"


def _code(exc_info: pytest.ExceptionInfo[OCIError]) -> str:
    return str(exc_info.value.code)


def _scope(raw_path: bytes, query: bytes = b"") -> dict[str, Any]:
    # What uvicorn builds: `path` percent-decoded, `raw_path` as sent.
    return {"type": "http", "path": unquote(raw_path.decode()), "raw_path": raw_path, "query_string": query}


# --- valid requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/", DistributionRequest("base", "")),
        ("/v2", DistributionRequest("base", "")),
        ("/v2/test/app/manifests/v1", DistributionRequest("manifest", "test/app", "v1")),
        ("/v2/app/manifests/" + str(DIGEST), DistributionRequest("manifest", "app", DIGEST, DIGEST)),
        ("/v2/a/b/c/blobs/" + str(DIGEST), DistributionRequest("blob", "a/b/c", DIGEST, DIGEST)),
        ("/v2/a/blobs/" + str(DIGEST512), DistributionRequest("blob", "a", DIGEST512, DIGEST512)),
        ("/v2/a/tags/list", DistributionRequest("tags", "a")),
        ("/v2/a/referrers/" + str(DIGEST), DistributionRequest("referrers", "a", DIGEST, DIGEST)),
        ("/v2/a/blobs/uploads/", DistributionRequest("uploads", "a")),
        ("/v2/a/blobs/uploads", DistributionRequest("uploads", "a")),
        ("/v2/a/blobs/uploads/3f-9a_b.c=", DistributionRequest("uploads", "a", upload_id="3f-9a_b.c=")),
        # endpoint words are fine as repository components: the last two segments decide
        ("/v2/manifests/blobs/manifests/tags", DistributionRequest("manifest", "manifests/blobs", "tags")),
        ("/v2/x/tags/list/manifests/list", DistributionRequest("manifest", "x/tags/list", "list")),
        ("/v2/a.b_c__d---e/f/manifests/_V1.0-rc", DistributionRequest("manifest", "a.b_c__d---e/f", "_V1.0-rc")),
    ],
)
def test_valid_paths(path: str, expected: DistributionRequest) -> None:
    assert parse_distribution_path(path, None) == expected


def test_ns_is_validated_and_lowercased() -> None:
    request = parse_distribution_path("/v2/library/app/manifests/latest", "Docker.IO")
    assert request.registry == "docker.io"
    for ns in ("127.0.0.1:5101", "[::1]:5000", "registry.k8s.io", "localhost"):
        assert parse_distribution_path("/v2/a/tags/list", ns).registry == ns


@pytest.mark.parametrize("ns", ["", "../etc", "a/b", "host:port", "a..b", "-a.io", "a b", "x" * 256, "h:123456"])
def test_bad_ns_is_name_invalid(ns: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path("/v2/a/tags/list", ns)
    assert _code(exc_info) == "NAME_INVALID"


# --- path prefix and containerd's override_path ----------------------------------------------------


@pytest.mark.parametrize("prefix", ["/mirror", "mirror", "/mirror/", "/a/b"])
def test_prefix_with_v2(prefix: str) -> None:
    root = "/" + prefix.strip("/")
    request = parse_distribution_path(f"{root}/v2/test/app/blobs/{DIGEST}", None, path_prefix=prefix)
    assert (request.kind, request.repository, request.digest) == ("blob", "test/app", DIGEST)
    assert parse_distribution_path(f"{root}/v2/", None, path_prefix=prefix).kind == "base"


def test_override_path_form_without_v2() -> None:
    request = parse_distribution_path("/mirror/test/app/manifests/v1", "ghcr.io", path_prefix="/mirror")
    assert (request.kind, request.repository, request.reference, request.registry) == (
        "manifest",
        "test/app",
        "v1",
        "ghcr.io",
    )
    assert parse_distribution_path("/mirror", None, path_prefix="/mirror").kind == "base"
    assert parse_distribution_path("/mirror/", None, path_prefix="/mirror").kind == "base"


def test_override_path_true_reads_a_leading_v2_as_a_repository_component() -> None:
    path = "/mirror/v2/app/manifests/v1"
    assert parse_distribution_path(path, None, path_prefix="/mirror").repository == "app"
    explicit = parse_distribution_path(path, None, path_prefix="/mirror", override_path=True)
    assert explicit.repository == "v2/app"


def test_override_path_false_requires_v2() -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path("/mirror/app/manifests/v1", None, path_prefix="/mirror", override_path=False)
    assert _code(exc_info) == "NOT_FOUND"


@pytest.mark.parametrize(
    "path", ["/other/v2/a/tags/list", "/mirrorx/v2/a/tags/list", "/v2/a/tags/list", "mirror/v2/a/tags/list"]
)
def test_paths_outside_the_prefix_are_not_found(path: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path(path, None, path_prefix="/mirror")
    assert (_code(exc_info), exc_info.value.status) == ("NOT_FOUND", 404)


# --- invalid requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Test/app",
        "test/App",
        "..",
        "a/../b",
        "a/./b",
        "../etc/passwd",
        "a//b",
        "a/",
        ".a",
        "a.",
        "-a",
        "a-",
        "a___b",
        "a..b",
        "a%2fb",
        "a%2F..%2Fb",
        "%2e%2e/app",
        "a%20b",
        "a b",
        "a\\b",
        "a:b",
        "é",
        "x" * 256,
        "a/" * 127 + "bb",
    ],
)
def test_bad_names_are_name_invalid(name: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path(f"/v2/{name}/manifests/latest", None)
    assert (_code(exc_info), exc_info.value.status) == ("NAME_INVALID", 400)


def test_name_of_255_characters_is_accepted() -> None:
    name = "a/" * 126 + "abc"
    assert len(name) == 255
    assert parse_distribution_path(f"/v2/{name}/tags/list", None).repository == name


@pytest.mark.parametrize(
    "reference",
    ["sha256:abc", f"sha256:{DIGEST.hex.upper()}", f"md5:{hashlib.md5(b'').hexdigest()}", f"{DIGEST}%00", ":"],
)
def test_bad_manifest_digest_is_digest_invalid(reference: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path(f"/v2/app/manifests/{reference}", None)
    assert _code(exc_info) == "DIGEST_INVALID"


@pytest.mark.parametrize("tag", [".hidden", "-x", "a" * 129, "v1%2f..", "v 1", "..", "ü"])
def test_bad_tag_is_manifest_unknown(tag: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path(f"/v2/app/manifests/{tag}", None)
    assert (_code(exc_info), exc_info.value.status) == ("MANIFEST_UNKNOWN", 404)


@pytest.mark.parametrize("digest", ["latest", "sha256:totallywrong", "..", "%2e%2e"])
def test_bad_blob_digest_is_digest_invalid(digest: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path(f"/v2/app/blobs/{digest}", None)
    assert (_code(exc_info), exc_info.value.status) == ("DIGEST_INVALID", 400)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/_catalog",
        "/v2/app",
        "/v2/app/",
        "/v2/app/manifests/",
        "/v2/app/manifests/v1/",
        f"/v2/app/blobs/{DIGEST}/",
        "/v2/app/blobs/",
        "/v2/app/referrers/",
        "/v2/app/tags",
        "/v2/app/tags/list/",
        "/v2/tags/list",
        "/v2/manifests/v1",
        "/v3/app/manifests/v1",
        "",
        "v2/app/manifests/v1",
    ],
)
def test_non_endpoints_are_not_found(path: str) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path(path, None, override_path=False)
    assert _code(exc_info) == "NOT_FOUND"


def test_bad_upload_id() -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path("/v2/a/blobs/uploads/a%2f..", None)
    assert _code(exc_info) == "BLOB_UPLOAD_UNKNOWN"


# --- ASGI scope: raw_path, not the decoded path ----------------------------------------------------


def test_scope_encoded_slash_cannot_sneak_into_a_name() -> None:
    scope = _scope(b"/v2/a%2Fb/manifests/v1")
    assert scope["path"] == "/v2/a/b/manifests/v1"  # valid if one trusted the decoded path
    with pytest.raises(OCIError) as exc_info:
        parse_scope(scope)
    assert _code(exc_info) == "NAME_INVALID"


def test_scope_encoded_dots_are_rejected() -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_scope(_scope(b"/v2/a/%2e%2e/%2e%2e/b/blobs/" + str(DIGEST).encode()))
    assert _code(exc_info) == "NAME_INVALID"


def test_scope_reads_ns_from_the_query_string() -> None:
    request = parse_scope(_scope(b"/v2/test/app/manifests/v1", b"ns=127.0.0.1%3A5101"))
    assert (request.repository, request.registry) == ("test/app", "127.0.0.1:5101")
    assert parse_scope(_scope(b"/v2/test/app/manifests/v1", b"other=1")).registry is None


def test_scope_rejects_two_ns_values() -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_scope(_scope(b"/v2/a/tags/list", b"ns=a.io&ns=b.io"))
    assert _code(exc_info) == "NAME_INVALID"


def test_scope_without_raw_path_falls_back_to_path() -> None:
    request = parse_scope({"type": "http", "path": "/m/a/tags/list", "query_string": b""}, "/m")
    assert (request.kind, request.repository) == ("tags", "a")


async def test_scope_through_starlette() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        parsed = parse_scope(request.scope, "/mirror")
        return JSONResponse({"kind": parsed.kind, "repository": parsed.repository, "ns": parsed.registry})

    def render(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OCIError)
        status, headers, body = to_response_parts(exc)
        return Response(body, status, headers)

    app = Starlette(routes=[Route("/{rest:path}", endpoint)], exception_handlers={OCIError: render})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        ok = await client.get("/mirror/v2/test/app/manifests/v1", params={"ns": "docker.io"})
        assert ok.json() == {"kind": "manifest", "repository": "test/app", "ns": "docker.io"}
        bad = await client.get("/mirror/v2/test%2Fapp/manifests/v1")
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["code"] == "NAME_INVALID"


# --- library/ defaulting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "repo", "library_prefix", "expected"),
    [
        ("docker.io", "alpine", False, "library/alpine"),
        ("DOCKER.IO", "alpine", False, "library/alpine"),
        ("registry-1.docker.io", "alpine", False, "library/alpine"),
        ("docker.io", "bitnami/redis", True, "bitnami/redis"),
        ("ghcr.io", "app", False, "app"),
        ("mirror.local", "app", True, "library/app"),
        (None, "app", False, "app"),
        (None, "app", True, "library/app"),
    ],
)
def test_normalize_repository(ns: str | None, repo: str, library_prefix: bool, expected: str) -> None:
    assert normalize_repository(ns, repo, library_prefix) == expected


def test_normalize_repository_validates() -> None:
    with pytest.raises(OCIError):
        normalize_repository("docker.io", "../x", True)
    with pytest.raises(OCIError):
        normalize_repository("docker.io", "a" * 250, True)  # too long once prefixed


# --- Range ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-9", 10, ByteRange(0, 9)),
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=2-5", 10, ByteRange(2, 5)),
        ("bytes=2-500", 10, ByteRange(2, 9)),
        ("bytes=5-", 10, ByteRange(5, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("Bytes = 1-2 ", 10, ByteRange(1, 2)),
        ("bytes=5-", None, ByteRange(5, None)),
        ("bytes=5-7", None, ByteRange(5, 7)),
        ("bytes=-3", None, None),  # suffix of an unknown size: serve it all
        ("bytes=0-1,3-4", 10, None),  # several ranges: ignored
        ("bytes=5-2", 10, None),  # last < first: invalid, ignored
        ("bytes=-", 10, None),
        ("bytes=", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=+1-2", 10, None),
        ("bytes=1_0-20", 10, None),
        ("bytes=\u0661-2", 10, None),  # a non-ASCII digit
        ("items=0-1", 10, None),
        ("0-1", 10, None),
        ("bytes=0-" + "9" * 40, 10, None),  # absurdly long numbers are malformed
        ("bytes=0-" + "9" * 30, 10, ByteRange(0, 9)),
    ],
)
def test_parse_range(header: str | None, size: int | None, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-0", 0)],
)
def test_unsatisfiable_range_is_416_with_content_range(header: str, size: int) -> None:
    with pytest.raises(OCIError) as exc_info:
        parse_range(header, size)
    assert (_code(exc_info), exc_info.value.status) == ("RANGE_INVALID", 416)
    assert exc_info.value.headers == {"Content-Range": f"bytes */{size}"}


def test_byte_range_helpers() -> None:
    assert ByteRange(2, 5).length == 4
    assert ByteRange(2, 5).content_range(10) == "bytes 2-5/10"
    assert ByteRange(2, 5).content_range(None) == "bytes 2-5/*"
    assert ByteRange(2, None).length is None
    with pytest.raises(ValueError):
        ByteRange(2, None).content_range(None)
    assert ByteRange(2, None).resolve(10) == ByteRange(2, 9)
    with pytest.raises(UnsatisfiableRange):  # oci's; registry_mirror.api._translations makes it a 416
        ByteRange(10, None).resolve(10)


# --- properties ----------------------------------------------------------------------------------

components = st.from_regex(r"[a-z0-9]{1,8}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}", fullmatch=True)
names = st.lists(components, min_size=1, max_size=6).map("/".join).filter(lambda n: len(n) <= 255)
tags = st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", fullmatch=True)
digests = st.builds(
    lambda data, algorithm: Digest.from_bytes(data, algorithm),
    st.binary(max_size=16),
    st.sampled_from(["sha256", "sha512"]),
)
# characters that make paths interesting: separators, dots, escapes, case, the endpoint words' letters
tricky_text = st.text(alphabet="/.%2eEfF:-_aAbsmnlitgurv0123456789 \\\x00é", max_size=80)


def _assert_safe(request: DistributionRequest) -> None:
    repo = request.repository
    assert ".." not in repo.split("/") and "//" not in repo and "%" not in repo
    assert not repo.startswith("/") and not repo.endswith("/")
    assert validate_repository(repo) == repo if repo else request.kind == "base"
    leaf = request.digest.hex if request.digest else str(request.reference or "x")
    joined = posixpath.normpath(posixpath.join(ROOT, repo, leaf))
    assert joined.startswith(ROOT + "/")
    assert posixpath.relpath(joined, ROOT).split("/")[0] != ".."


@given(names, tags)
def test_valid_manifest_paths_round_trip(name: str, tag: str) -> None:
    request = parse_distribution_path(f"/v2/{name}/manifests/{tag}", None)
    assert (request.kind, request.repository, request.reference, request.digest) == ("manifest", name, tag, None)
    _assert_safe(request)


@given(names, digests, st.sampled_from(["blobs", "manifests", "referrers"]))
def test_valid_digest_paths_round_trip(name: str, digest: Digest, endpoint: str) -> None:
    request = parse_distribution_path(f"/v2/{name}/{endpoint}/{digest}", None)
    assert (request.repository, request.reference, request.digest) == (name, digest, digest)
    _assert_safe(request)


@given(names, tags)
def test_valid_paths_round_trip_with_prefix_and_override(name: str, tag: str) -> None:
    request = parse_distribution_path(f"/m/{name}/manifests/{tag}", None, path_prefix="/m", override_path=True)
    assert (request.repository, request.reference) == (name, tag)


@given(tricky_text, st.sampled_from(["manifests", "blobs", "tags", "referrers"]), tricky_text)
def test_hostile_paths_raise_only_oci_errors_and_parse_safely(name: str, endpoint: str, tail: str) -> None:
    path = f"/v2/{name}/{endpoint}/{tail}"
    for raw in (path, unquote(path)):
        try:
            request = parse_distribution_path(raw, None)
        except OCIError:
            continue
        _assert_safe(request)


@given(st.text(max_size=120), st.none() | st.text(max_size=40), st.sampled_from(["", "/m"]))
def test_arbitrary_text_raises_only_oci_errors(path: str, ns: str | None, prefix: str) -> None:
    try:
        request = parse_distribution_path(path, ns, path_prefix=prefix)
    except OCIError as exc:
        assert 400 <= exc.status < 500
        return
    _assert_safe(request)


@given(st.text(max_size=60))
@example("tags/list")  # /v2/app/manifests/tags/list lists the tags of the repository app/manifests
def test_reference_parser_raises_only_oci_errors(reference: str) -> None:
    try:
        request = parse_distribution_path(f"/v2/app/manifests/{reference}", None)
    except OCIError as exc:
        assert exc.code in (ErrorCode.MANIFEST_UNKNOWN, ErrorCode.DIGEST_INVALID, ErrorCode.NOT_FOUND)
        return
    if request.kind == "manifest":
        assert str(request.reference) == reference
    else:  # a reference with "/" can address another endpoint: `app/manifests` is a valid repository
        assert "/" in reference and request.repository.startswith("app/manifests")
    _assert_safe(request)


def test_digest_parse_errors_do_not_escape_as_invalid_digest() -> None:
    # paths.py is a boundary: callers see OCIError only, never the lower InvalidDigest.
    with pytest.raises(OCIError) as exc_info:
        parse_distribution_path("/v2/a/blobs/sha256:zz", None)
    assert not isinstance(exc_info.value, InvalidDigest)
    assert isinstance(exc_info.value.__cause__, InvalidDigest)


range_headers = st.one_of(
    st.builds(
        lambda a, b: f"bytes={a}-{b}",
        st.one_of(st.just(""), st.integers(0, 2**70).map(str)),
        st.one_of(st.just(""), st.integers(0, 2**70).map(str)),
    ),
    st.text(alphabet="bytes=-,0123456789 ", max_size=30),
    st.text(max_size=30),
)


@given(range_headers, st.integers(0, 2**64))
def test_ranges_stay_within_the_blob(header: str, size: int) -> None:
    try:
        byte_range = parse_range(header, size)
    except OCIError as exc:
        assert exc.status == 416 and exc.headers == {"Content-Range": f"bytes */{size}"}
        return
    if byte_range is not None:
        assert byte_range.end is not None
        assert 0 <= byte_range.start <= byte_range.end < size
        assert byte_range.length == byte_range.end - byte_range.start + 1


@given(st.integers(0, 2**40), st.one_of(st.none(), st.integers(0, 2**40)), st.integers(0, 2**40))
def test_open_range_resolved_later_equals_range_parsed_with_size(start: int, end: int | None, size: int) -> None:
    assume(end is None or end >= start)
    header = f"bytes={start}-{'' if end is None else end}"
    open_range = parse_range(header, None)
    assert open_range == ByteRange(start, end)  # unknown size: an open range stays open
    try:
        now = parse_range(header, size)
    except OCIError:
        with pytest.raises(UnsatisfiableRange):
            open_range.resolve(size)
        return
    assert open_range.resolve(size) == now


def test_route_by_path_takes_the_upstream_from_the_first_component() -> None:
    from registry_mirror.api._paths import route_by_path

    names = frozenset({"quay.io", "docker.io"})
    routed = route_by_path(parse_distribution_path("/v2/quay.io/org/app/manifests/v1", None), names)
    assert (routed.registry, routed.repository, routed.reference) == ("quay.io", "org/app", "v1")
    hub = route_by_path(parse_distribution_path("/v2/docker.io/alpine/manifests/3", None), names)
    assert (hub.registry, hub.repository) == ("docker.io", "alpine")  # library/ is added downstream
    for path, ns in (
        ("/v2/quay.io/org/app/manifests/v1", "ghcr.io"),  # an ns wins
        ("/v2/other.io/org/app/manifests/v1", None),  # not configured: a repository
        ("/v2/quay.io/manifests/v1", None),
    ):  # one component: a repository
        request = parse_distribution_path(path, ns)
        assert route_by_path(request, names) == request
