"""OCI distribution API semantics of a real `registry-mirror serve` in front of a real docker-registry,
spoken to with httpx (and http.client where a path must reach the server undecoded)."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory, TestImages
from tests.registry_mirror.test_e2e_support import (
    assert_no_server_errors,
    cached_blob_path,
    mirror_config,
    ns,
    sha256_of,
    start_mirror,
    streamed_digest,
    wait_cached,
)
from tests.support.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    push_blob,
    push_manifest,
)
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

ALL_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))


@pytest.fixture(scope="module")
def mirror(
    origin: OriginRegistry, images: TestImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MirrorProcess]:
    """One mirror for the module (tests that need a cold blob push fresh random bytes)."""
    workdir = tmp_path_factory.mktemp("api-mirror")
    config = mirror_config(workdir / "mirror.toml", [origin])
    mirror = MirrorProcess(workdir, {}, ["--config", str(config)]).start()
    try:
        yield mirror
        assert_no_server_errors(mirror)
    finally:
        mirror.stop()


@pytest.fixture
def client(mirror: MirrorProcess) -> Iterator[httpx.Client]:
    with mirror.client() as c:
        yield c


def _error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()["errors"][0]["code"]


def _fresh_blob(origin: OriginRegistry, repo: str, size: int) -> tuple[str, bytes]:
    """A blob no mirror has seen yet (random bytes), pushed to the origin."""
    data = os.urandom(size)
    return push_blob(origin, repo, data), data


# -- base, manifests, blobs ------------------------------------------------------------------------
def test_base_endpoint_answers_with_api_version(client: httpx.Client) -> None:
    response = client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize(
    "which,media_type",
    [("app", OCI_MANIFEST), ("docker", DOCKER_MANIFEST), ("multi", OCI_INDEX), ("artifact", OCI_MANIFEST)],
)
def test_manifest_by_tag_and_by_digest(
    which: str, media_type: str, client: httpx.Client, origin: OriginRegistry, images: TestImages
) -> None:
    image = getattr(images, which)
    digest = image.manifest.digest
    for reference in (image.tag, digest):
        url = f"/v2/{image.repo}/manifests/{reference}"
        head = client.head(url, params=ns(origin), headers={"Accept": ALL_ACCEPT})
        get = client.get(url, params=ns(origin), headers={"Accept": ALL_ACCEPT})
        for response in (head, get):
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == media_type
            assert response.headers["docker-content-digest"] == digest
            assert response.headers["etag"] == f'"{digest}"'
            assert int(response.headers["content-length"]) == image.manifest.size
        assert head.content == b""
        assert sha256_of(get.content) == digest and len(get.content) == image.manifest.size


def test_blob_head_and_get(client: httpx.Client, origin: OriginRegistry, images: TestImages) -> None:
    for blob in images.app.blobs:
        url = f"/v2/{images.app.repo}/blobs/{blob.digest}"
        head = client.head(url, params=ns(origin))
        assert head.status_code == 200
        assert int(head.headers["content-length"]) == blob.size
        assert head.headers["docker-content-digest"] == blob.digest
        with client.stream("GET", url, params=ns(origin)) as get:
            assert get.status_code == 200
            assert get.headers["docker-content-digest"] == blob.digest
            assert streamed_digest(get) == (blob.digest, blob.size)


def test_range_on_cold_and_cached_blob(client: httpx.Client, mirror: MirrorProcess, origin: OriginRegistry) -> None:
    digest, data = _fresh_blob(origin, "test/ranges", 3 * (1 << 20) + 123)
    url = f"/v2/test/ranges/blobs/{digest}"
    size = len(data)
    cold = client.get(url, params=ns(origin), headers={"Range": "bytes=1000-1999999"})
    assert cold.status_code == 206, cold.text
    assert cold.headers["content-range"] == f"bytes 1000-1999999/{size}"
    assert cold.content == data[1000:2000000]
    # The abandoned rest of the fill completes in the background; wait until it is cached.
    assert streamed_digest(client.get(url, params=ns(origin)))[0] == digest
    wait_cached(mirror.cache_dir, digest)
    for header, start, end in (
        ("bytes=0-0", 0, 0),
        (f"bytes={size - 10}-", size - 10, size - 1),
        ("bytes=-5", size - 5, size - 1),
    ):
        hit = client.get(url, params=ns(origin), headers={"Range": header})
        assert hit.status_code == 206, header
        assert hit.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert hit.content == data[start : end + 1]
    past_end = client.get(url, params=ns(origin), headers={"Range": f"bytes={size}-"})
    assert past_end.status_code == 416
    assert past_end.headers["content-range"] == f"bytes */{size}"


def test_unsatisfiable_range_on_cold_blob(client: httpx.Client, origin: OriginRegistry) -> None:
    digest, _data = _fresh_blob(origin, "test/ranges", 4096)
    response = client.get(f"/v2/test/ranges/blobs/{digest}", params=ns(origin), headers={"Range": "bytes=5000-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */4096"
    assert _error_code(response) == "RANGE_INVALID"


# -- pass-through listings -----------------------------------------------------------------------
def test_tags_list_paginates_like_the_origin(client: httpx.Client, origin: OriginRegistry) -> None:
    config = push_blob(origin, "test/tags", b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [],
        }
    ).encode()
    for tag in ("a", "b", "c"):
        push_manifest(origin, "test/tags", tag, body, OCI_MANIFEST)
    full = client.get("/v2/test/tags/tags/list", params=ns(origin))
    assert full.status_code == 200 and sorted(full.json()["tags"]) == ["a", "b", "c"]
    marker = origin.clear_log_marker()
    page = client.get("/v2/test/tags/tags/list", params={**ns(origin), "n": "1", "last": "a"})
    # docker-registry 2.8 ignores n/last (3.0 implements them): the mirror must pass both on and
    # answer exactly what the origin answered, Link header (relative to the mirror) included.
    (seen,) = [e for e in origin.entries_since(marker) if e.path == "/v2/test/tags/tags/list"]
    assert "n=1" in seen.uri and "last=a" in seen.uri and "ns=" not in seen.uri
    direct = httpx.get(f"{origin.url}/v2/test/tags/tags/list", params={"n": "1", "last": "a"})
    assert page.status_code == direct.status_code == 200
    assert page.json() == direct.json()
    if "link" in direct.headers:
        assert page.headers["link"].startswith("</v2/test/tags/tags/list?")
    missing = client.get("/v2/test/nothing-here/tags/list", params=ns(origin))
    assert missing.status_code == 404 and _error_code(missing) == "NAME_UNKNOWN"


def test_referrers_pass_through_the_origin_answer(
    client: httpx.Client, origin: OriginRegistry, images: TestImages
) -> None:
    path = f"/v2/{images.app.repo}/referrers/{images.app.manifest.digest}"
    params = {"artifactType": images.artifact.artifact_type or ""}
    direct = httpx.get(f"{origin.url}{path}", params=params)
    marker = origin.clear_log_marker()
    through = client.get(path, params={**ns(origin), **params})
    # docker-registry 2.8 has no referrers API: whatever it answers, the mirror answers the same.
    assert through.status_code == direct.status_code
    if direct.status_code == 200:
        assert through.json() == direct.json()
    (seen,) = [e for e in origin.entries_since(marker) if "/referrers/" in e.path]
    assert "artifactType=" in seen.uri


def test_every_accept_line_reaches_the_origin(client: httpx.Client, origin: OriginRegistry, images: TestImages) -> None:
    # Three separate header lines, the way skopeo sends them.
    lines = [("Accept", DOCKER_MANIFEST), ("Accept", DOCKER_LIST), ("Accept", OCI_MANIFEST)]
    app = client.get(f"/v2/{images.app.repo}/manifests/{images.app.tag}", params=ns(origin), headers=lines)
    # The OCI image is served only because the third line arrived at the origin.
    assert app.status_code == 200, app.text
    assert app.headers["content-type"] == OCI_MANIFEST
    # The index is refused by docker-registry when no index type is acceptable...
    multi_url = f"/v2/{images.multi.repo}/manifests/{images.multi.tag}"
    refused = client.get(multi_url, params=ns(origin), headers=lines)
    assert refused.status_code == 404 and _error_code(refused) == "MANIFEST_UNKNOWN"
    # ...and served once the last of four lines names it.
    accepted = client.get(multi_url, params=ns(origin), headers=[*lines, ("Accept", OCI_INDEX)])
    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["content-type"] == OCI_INDEX
    assert accepted.headers["docker-content-digest"] == images.multi.manifest.digest


# -- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/v2/test/app/blobs/uploads/"),
        ("PATCH", "/v2/test/app/blobs/uploads/some-upload-id"),
        ("PUT", "/v2/test/app/blobs/uploads/some-upload-id"),
        ("PUT", "/v2/test/app/manifests/v2"),
        ("DELETE", "/v2/test/app/manifests/v1"),
        ("DELETE", "/v2/test/app/blobs/sha256:" + "0" * 64),
    ],
)
def test_writes_are_refused(method: str, path: str, client: httpx.Client, origin: OriginRegistry) -> None:
    marker = origin.clear_log_marker()
    response = client.request(method, path, params=ns(origin), content=b"{}")
    assert response.status_code == 405
    assert _error_code(response) == "UNSUPPORTED"
    assert origin.entries_since(marker) == []


def test_unknown_registry_is_a_404_without_upstream_traffic(
    client: httpx.Client, origin: OriginRegistry, images: TestImages
) -> None:
    marker = origin.clear_log_marker()
    for registry in ("ghcr.io", "docker.io", "127.0.0.1:1"):
        for path in (
            "/v2/test/app/manifests/v1",
            f"/v2/test/app/blobs/{images.app.layers[0].digest}",
            "/v2/test/app/tags/list",
        ):
            response = client.get(path, params={"ns": registry})
            assert response.status_code == 404, (registry, path)
            assert _error_code(response) == "NAME_UNKNOWN"
    assert origin.entries_since(marker) == []


def _raw_get(mirror: MirrorProcess, path: str) -> tuple[int, bytes, str]:
    """GET with the path sent byte for byte (httpx would normalise `..` and `%2e`)."""
    connection = http.client.HTTPConnection(mirror.bind_host, mirror.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("content-type") or ""
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path,code",
    [
        ("/v2/Test/app/manifests/v1", "NAME_INVALID"),
        ("/v2/test/../app/manifests/v1", "NAME_INVALID"),
        ("/v2/test/%2e%2e/app/manifests/v1", "NAME_INVALID"),
        ("/v2/test%2fapp/manifests/v1", "NAME_INVALID"),
        ("/v2/test/app%2f..%2f..%2fetc/blobs/sha256:" + "0" * 64, "NAME_INVALID"),
        ("/v2/" + "a" * 256 + "/manifests/v1", "NAME_INVALID"),
        ("/v2/" + "/".join(["abcdefgh"] * 30) + "/blobs/sha256:" + "0" * 64, "NAME_INVALID"),
        ("/v2/test/app/blobs/sha256:totallywrong", "DIGEST_INVALID"),
        ("/v2/test/app/blobs/sha256:" + "a" * 63, "DIGEST_INVALID"),
        ("/v2/test/app/blobs/sha256:" + "A" * 64, "DIGEST_INVALID"),
        ("/v2/test/app/manifests/sha256:" + "g" * 64, "DIGEST_INVALID"),
        ("/v2/test/app/blobs/md5:" + "0" * 32, "DIGEST_INVALID"),
        ("/v2/test/app/referrers/sha256:xyz", "DIGEST_INVALID"),
    ],
)
def test_invalid_names_and_digests_are_400(path: str, code: str, mirror: MirrorProcess, origin: OriginRegistry) -> None:
    marker = origin.clear_log_marker()
    status, body, content_type = _raw_get(mirror, f"{path}?ns={origin.host}")
    assert status == 400, body
    assert content_type.startswith("application/json")
    assert json.loads(body)["errors"][0]["code"] == code
    assert origin.entries_since(marker) == []


def test_oversized_manifest_is_refused_and_not_cached(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    # docker-registry 2.8.2 itself refuses to store a manifest over 4 MiB ("request body too
    # large"), so the mirror's cap is lowered to 64 KiB and the origin holds a 100 KiB manifest.
    mirror = start_mirror(mirror_process, origin, tmp_path, extra_toml="manifest_max_bytes = 65536")
    with mirror.client() as client:
        _check_oversized(client, mirror, origin)
    assert_no_server_errors(mirror)


def _check_oversized(client: httpx.Client, mirror: MirrorProcess, origin: OriginRegistry) -> None:
    config = push_blob(origin, "test/huge", b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [],
        "annotations": {"padding": "x" * (100 << 10)},
    }
    body = json.dumps(manifest).encode()
    digest = push_manifest(origin, "test/huge", "v1", body, OCI_MANIFEST)
    marker = origin.clear_log_marker()
    for reference in ("v1", digest, "v1"):
        response = client.get(
            f"/v2/test/huge/manifests/{reference}", params=ns(origin), headers={"Accept": OCI_MANIFEST}
        )
        assert 400 <= response.status_code < 600 and response.status_code != 500, response.text
        assert "errors" in response.json()
    assert not cached_blob_path(mirror.cache_dir, digest).exists()
    # Nothing remembered: every attempt asked the origin again.
    assert len([e for e in origin.manifest_requests(marker) if e.method == "GET"]) == 3
