"""The test infrastructure proves itself against the real origin, without the mirror."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TestImages
from tests.support.clients import oras_pull, skopeo_copy_from
from tests.support.containerd import (
    ContainerdDaemon,
    decode_pull_image_response,
    encode_pull_image_request,
    write_hosts_toml,
)
from tests.support.images import (
    ARTIFACT_TYPE,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    fetch_manifest,
    file_digest,
    push_blob,
    push_multilayer_image,
)
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry, ProxyRegistry, parse_access_log
from tests.support.procs import ManagedProcess

pytestmark = pytest.mark.integration


def _streamed_digest(url: str) -> str:
    sha = hashlib.sha256()
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200, url
        for chunk in response.iter_bytes(1 << 20):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


# -- images on the origin -------------------------------------------------------------------
def test_pushed_images_are_served_with_their_digests(origin: OriginRegistry, images: TestImages) -> None:
    for image, media_type in ((images.app, OCI_MANIFEST), (images.docker, DOCKER_MANIFEST)):
        body, served_type, served_digest = fetch_manifest(origin, image.repo, image.tag)
        assert served_type == media_type == image.manifest.media_type
        assert served_digest == image.manifest.digest == f"sha256:{hashlib.sha256(body).hexdigest()}"
        for blob in image.blobs:
            assert _streamed_digest(f"{origin.url}/v2/{image.repo}/blobs/{blob.digest}") == blob.digest
    assert len(images.app.layers) == 3
    assert all(layer.media_type.endswith("tar.gzip") for layer in images.docker.layers)


def test_multiarch_index_lists_both_platforms(origin: OriginRegistry, images: TestImages) -> None:
    body, media_type, digest = fetch_manifest(origin, images.multi.repo, images.multi.tag)
    assert (media_type, digest) == (OCI_INDEX, images.multi.manifest.digest)
    platforms = {m["platform"]["architecture"] for m in json.loads(body)["manifests"]}
    assert platforms == {"amd64", "arm64"}
    amd64, arm64 = images.multi.child("linux/amd64"), images.multi.child("linux/arm64")
    assert amd64.layers[0].digest != arm64.layers[0].digest


def test_artifact_manifest_keeps_artifact_type(origin: OriginRegistry, images: TestImages) -> None:
    body, _, digest = fetch_manifest(origin, images.artifact.repo, images.artifact.tag)
    manifest = json.loads(body)
    assert digest == images.artifact.manifest.digest
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == images.artifact.config.media_type


def test_same_seed_gives_same_digests(origin_factory, tmp_path: Path) -> None:
    first = push_multilayer_image(origin_factory(), "r/a", "t", (4096, 70000), "seed", tmp_path / "a")
    second = push_multilayer_image(origin_factory(), "r/a", "t", (4096, 70000), "seed", tmp_path / "b")
    other = push_multilayer_image(origin_factory(), "r/a", "t", (4096, 70000), "other", tmp_path / "c")
    assert first.manifest.digest == second.manifest.digest
    assert first.layers == second.layers
    assert other.layers[0].digest != first.layers[0].digest


def test_push_blob_streams_a_file(origin: OriginRegistry, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with open(path, "wb") as out:
        for i in range(5):
            out.write(bytes([i]) * (1 << 20))
    digest = push_blob(origin, "raw/blobs", path)
    assert digest == file_digest(path)
    assert _streamed_digest(f"{origin.url}/v2/raw/blobs/blobs/{digest}") == digest


# -- access log ----------------------------------------------------------------------------------
def test_access_log_marker_sees_only_later_requests(origin: OriginRegistry, images: TestImages) -> None:
    layer = images.app.layers[0].digest
    httpx.head(f"{origin.url}/v2/test/app/blobs/{layer}")
    marker = origin.clear_log_marker()
    assert origin.entries_since(marker) == []
    httpx.get(f"{origin.url}/v2/test/app/blobs/{layer}", headers={"User-Agent": "selftest/1"})
    (entry,) = origin.blob_requests(layer, since=marker)
    assert (entry.method, entry.status, entry.bytes, entry.user_agent) == (
        "GET",
        200,
        images.app.layers[0].size,
        "selftest/1",
    )
    assert len(origin.blob_requests(layer)) >= 2  # without a marker: the whole history


def test_parse_access_log_reads_combined_lines() -> None:
    text = (
        'time="x" level=info msg="response completed"\n'
        '127.0.0.1 - - [23/Nov/2026:04:58:39 +0000] "HEAD /v2/a/b/blobs/sha256:ab?ns=x HTTP/1.1"'
        ' 404 157 "" "curl/7.88.1"\n'
    )
    (entry,) = parse_access_log(text)
    assert (entry.method, entry.path, entry.status, entry.blob_digest) == (
        "HEAD",
        "/v2/a/b/blobs/sha256:ab",
        404,
        "sha256:ab",
    )


def test_proxy_registry_fetches_from_its_remote(origin: OriginRegistry, images: TestImages, tmp_path: Path) -> None:
    blob = images.docker.layers[0]
    marker = origin.clear_log_marker()
    with ProxyRegistry(tmp_path / "proxy", origin.url) as proxy:
        assert _streamed_digest(f"{proxy.url}/v2/{images.docker.repo}/blobs/{blob.digest}") == blob.digest
    assert [e.status for e in origin.blob_gets(blob.digest, since=marker)]  # at least one 200 GET
    assert all(e.status == 200 for e in origin.blob_gets(blob.digest, since=marker))


# -- containerd ----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["app", "docker"])
def test_ctr_pull_straight_from_origin(
    which: str, containerd: ContainerdDaemon, origin: OriginRegistry, images: TestImages
) -> None:
    image = getattr(images, which)
    write_hosts_toml(containerd.hosts_dir, origin.host, None, server_url=origin.url)
    marker = origin.clear_log_marker()
    containerd.ctr_pull(image.ref)
    gets = origin.blob_gets(since=marker)
    assert sorted(e.blob_digest for e in gets) == sorted(b.digest for b in image.blobs)
    assert all(e.status == 200 and e.user_agent.startswith("containerd/") for e in gets)
    assert {b.digest for b in image.blobs} <= containerd.content_digests()
    containerd.remove_all_images()
    assert containerd.content_digests() == set()


def test_ctr_pull_of_index_fetches_only_host_platform(
    containerd: ContainerdDaemon, origin: OriginRegistry, images: TestImages
) -> None:
    write_hosts_toml(containerd.hosts_dir, origin.host, None, server_url=origin.url)
    marker = origin.clear_log_marker()
    containerd.ctr_pull(images.multi.ref)
    fetched = {e.blob_digest for e in origin.blob_gets(since=marker)}
    assert {b.digest for b in images.multi.child("linux/amd64").blobs} <= fetched
    assert not {layer.digest for layer in images.multi.child("linux/arm64").layers} & fetched


def test_cri_pull_straight_from_origin(
    containerd: ContainerdDaemon, origin: OriginRegistry, images: TestImages
) -> None:
    write_hosts_toml(containerd.hosts_dir, origin.host, None, server_url=origin.url)
    marker = origin.clear_log_marker()
    assert containerd.cri_pull(images.app.ref) == images.app.config.digest
    assert images.app.ref in containerd.image_refs("k8s.io")
    assert {e.blob_digest for e in origin.blob_gets(since=marker)} == {b.digest for b in images.app.blobs}
    containerd.remove_all_images()


def test_cri_pull_of_docker_io_short_name_goes_to_loopback_server(
    containerd: ContainerdDaemon, origin_factory, tmp_path: Path
) -> None:
    other = origin_factory()
    image = push_multilayer_image(other, "library/app", "v1", (50000,), "short", tmp_path)
    write_hosts_toml(containerd.hosts_dir, "docker.io", None, server_url=other.url)
    assert containerd.cri_pull("app:v1") == image.config.digest
    manifests = other.manifest_requests()
    assert manifests and all(e.path.startswith("/v2/library/app/") for e in manifests)
    assert "docker.io/library/app:v1" in containerd.image_refs("k8s.io")


def test_cri_pull_flags_a_rejected_hosts_toml(
    containerd: ContainerdDaemon, origin: OriginRegistry, images: TestImages
) -> None:
    # containerd 1.6 rejects a hosts.toml without any [host] table and falls back silently.
    path = containerd.hosts_dir / origin.host / "hosts.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'server = "{origin.url}"\n')
    with pytest.raises(AssertionError, match="invalid `host` tree"):
        containerd.cri_pull(images.app.ref, timeout=30)


def test_cri_pull_fails_for_missing_tag(containerd: ContainerdDaemon, origin: OriginRegistry) -> None:
    import grpc

    write_hosts_toml(containerd.hosts_dir, origin.host, None, server_url=origin.url)
    with pytest.raises(grpc.RpcError):
        containerd.cri_pull(f"{origin.host}/test/app:no-such-tag")


def test_hosts_toml_refuses_non_loopback_and_schemeless(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scheme"):
        write_hosts_toml(tmp_path, "docker.io", "127.0.0.1:5000", "http://127.0.0.1:5001")
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        write_hosts_toml(tmp_path, "docker.io", None, "https://registry-1.docker.io")
    text = write_hosts_toml(
        tmp_path, "docker.io", ["http://127.0.0.11:1", "http://127.0.0.12:2"], "http://127.0.0.1:3", override_path=True
    ).read_text()
    assert text.index('[host."http://127.0.0.11:1"]') < text.index('[host."http://127.0.0.12:2"]')
    assert text.count("override_path = true") == 2


def test_pull_image_request_round_trip() -> None:
    ref = "docker.io/library/" + "x" * 200 + ":v1"  # long enough for a two-byte length varint
    encoded = encode_pull_image_request(ref)
    assert encoded[0] == 0x0A and decode_pull_image_response(encoded[3:]) == ref


# -- other clients -------------------------------------------------------------------------------
def test_skopeo_copy_from_origin(origin: OriginRegistry, images: TestImages, tmp_path: Path) -> None:
    had_cache = Path("/var/lib/containers/cache").exists()
    skopeo_copy_from(images.app.ref, tmp_path / "out")
    for blob in images.app.blobs:
        assert file_digest(tmp_path / "out" / blob.digest.split(":")[1]) == blob.digest
    assert Path("/var/lib/containers/cache").exists() == had_cache  # hermetic


def test_oras_pull_artifact(images: TestImages, tmp_path: Path) -> None:
    pulled = oras_pull(images.artifact.ref, tmp_path / "oras")
    assert sorted(p.name for p in pulled) == sorted(images.artifact_files)
    for path in pulled:
        assert file_digest(path) == file_digest(images.artifact_files[path.name])


# -- processes -----------------------------------------------------------------------------------
def test_managed_process_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    )
    process = ManagedProcess([sys.executable, "-c", script], tmp_path / "p.log").start()
    while "up" not in process.log_text():
        assert process.alive()
        time.sleep(0.01)
    assert process.stop(grace=0.5) == -9
    assert not process.alive()


class _StaticMirror(MirrorProcess):
    """The factory's machinery driven by a stand-in server that answers /v2/ with 200."""

    def argv(self) -> list[str]:
        (self.cache_dir / "v2").mkdir(parents=True, exist_ok=True)
        (self.cache_dir / "v2" / "index.html").write_text("{}")
        return [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            self.bind_host,
            "--directory",
            str(self.cache_dir),
            str(self.port),
        ]


def test_mirror_process_start_kill9_restart(tmp_path: Path) -> None:
    mirror = _StaticMirror(tmp_path, {"x": "http://127.0.0.1:1"}, host="127.0.0.11")
    mirror.start()
    try:
        port = mirror.port
        assert httpx.get(f"{mirror.url}/v2/").status_code == 200
        mirror.kill9()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{mirror.url}/v2/")
        mirror.restart()
        assert mirror.port == port and httpx.get(f"{mirror.url}/v2/").status_code == 200
    finally:
        mirror.stop()


def test_mirror_process_reports_a_crash(tmp_path: Path) -> None:
    class Crashing(MirrorProcess):
        def argv(self) -> list[str]:
            return [sys.executable, "-c", "import sys; print('boom: bad flag'); sys.exit(2)"]

    with pytest.raises(RuntimeError, match="boom: bad flag"):
        Crashing(tmp_path, {}).start(timeout=20)
