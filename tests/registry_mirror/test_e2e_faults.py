"""Faults at the origin, seen through a real mirror: a corrupt blob, an origin killed mid-body, an
origin that is down, and tags served stale (with 404s remembered) while it is gone."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import (
    assert_no_server_errors,
    cached_blob_path,
    metric_total,
    ns,
    origin_blob_data,
    start_mirror,
    streamed_digest,
    wait_cached,
)
from tests.support.images import OCI_MANIFEST, push_blob, push_manifest, write_random_file
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration


def _wait_no_temp_files(mirror: MirrorProcess, timeout: float = 20.0) -> None:
    """A failed fill removes its temp file in its own task, just after the client saw the abort."""
    deadline = time.monotonic() + timeout
    while any((mirror.cache_dir / "tmp").iterdir()):
        assert time.monotonic() < deadline, list((mirror.cache_dir / "tmp").iterdir())
        time.sleep(0.05)


def _read_all(client: httpx.Client, url: str, params: dict[str, str]) -> tuple[str, int]:
    with client.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        return streamed_digest(response)


def _tiny_manifest(origin: OriginRegistry, repo: str, tag: str, note: str) -> str:
    config = push_blob(origin, repo, b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [],
            "annotations": {"note": note},
        }
    ).encode()
    return push_manifest(origin, repo, tag, body, OCI_MANIFEST)


def test_corrupt_origin_blob_is_aborted_and_not_cached(
    mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin = origin_factory()
    source = write_random_file(tmp_path / "blob.bin", 3 << 20, seed="flip")
    digest = push_blob(origin, "test/flip", source)
    data_file = origin_blob_data(origin, digest)
    good = data_file.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # same length, one byte different
    data_file.write_bytes(bytes(flipped))
    mirror = start_mirror(mirror_process, origin, tmp_path)
    url = f"/v2/test/flip/blobs/{digest}"

    with mirror.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            _read_all(client, url, ns(origin))  # never a complete 200 with the wrong bytes
        _wait_no_temp_files(mirror)
        assert not cached_blob_path(mirror.cache_dir, digest).exists()

        data_file.write_bytes(good)
        assert _read_all(client, url, ns(origin)) == (digest, len(good))
        assert wait_cached(mirror.cache_dir, digest).read_bytes() == good
        marker = origin.clear_log_marker()
        assert _read_all(client, url, ns(origin)) == (digest, len(good))
        assert origin.blob_requests(digest, since=marker) == []  # served from the cache


def test_origin_killed_mid_body_gives_incomplete_transfer(
    mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin = origin_factory()
    source = write_random_file(tmp_path / "big.bin", 64 << 20, seed="kill")
    digest = push_blob(origin, "test/kill", source)
    source.unlink()
    mirror = start_mirror(mirror_process, origin, tmp_path)
    assert origin.process is not None
    with mirror.client() as client:
        with client.stream("GET", f"/v2/test/kill/blobs/{digest}", params=ns(origin)) as response:
            assert response.status_code == 200
            # Headers mean the origin is sending: freeze it so the kill lands mid-body, then kill it.
            os.kill(origin.process.pid, signal.SIGSTOP)
            origin.process.kill9()
            with pytest.raises(httpx.RemoteProtocolError):
                streamed_digest(response)
    _wait_no_temp_files(mirror)
    assert not cached_blob_path(mirror.cache_dir, digest).exists()


def test_origin_down_gives_a_fast_oci_error(mirror_process: MirrorFactory, origin_factory, tmp_path: Path) -> None:
    origin = origin_factory()
    mirror = start_mirror(mirror_process, origin, tmp_path)
    origin.stop()
    # A client timeout well under containerd's 30 s bounds the test: a hanging mirror fails it.
    with httpx.Client(base_url=mirror.url, timeout=10) as client:
        for path in ("/v2/test/app/manifests/v1", "/v2/test/app/blobs/sha256:" + "1" * 64, "/v2/test/app/tags/list"):
            for method in ("GET", "HEAD"):
                response = client.request(method, path, params=ns(origin), headers={"Accept": OCI_MANIFEST})
                assert response.status_code in (502, 503, 504), (method, path, response.status_code)
                if method == "GET":
                    assert response.json()["errors"][0]["code"] == "UPSTREAM_UNAVAILABLE"
    assert_no_server_errors(mirror)


def test_stale_tag_while_origin_down_and_negative_answers(
    mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin = origin_factory()
    digest = _tiny_manifest(origin, "test/stale", "v1", "stale")
    mirror = start_mirror(
        mirror_process, origin, tmp_path, extra_toml='tag_ttl = "1s"\nnegative_ttl = "1s"\nmax_stale = "1h"'
    )
    headers = {"Accept": OCI_MANIFEST}
    with httpx.Client(base_url=mirror.url, headers=headers, timeout=10) as client:
        manifest_url = "/v2/test/stale/manifests/v1"
        missing_url = "/v2/test/stale/manifests/no-such-tag"
        marker = origin.clear_log_marker()
        for _ in range(3):
            missing = client.get(missing_url, params=ns(origin))
            assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert len([e for e in origin.manifest_requests(marker) if "no-such-tag" in e.path]) == 1

        def asked_origin() -> int:  # answers from the negative cache do not reach the origin
            assert client.get(missing_url, params=ns(origin)).status_code == 404
            return len([e for e in origin.manifest_requests(marker) if "no-such-tag" in e.path])

        # Past negative_ttl (on the mirror's clock): asked again, exactly once.
        assert wait_until(asked_origin, lambda asked: asked > 1, "negative_ttl expiry") == 2

        fresh = client.get(manifest_url, params=ns(origin))
        assert fresh.status_code == 200 and fresh.headers["docker-content-digest"] == digest
        stale_before = metric_total(client.get("/metrics").text, "registry_mirror_stale_answers_total")
        origin.stop()

        def stale_answers() -> float:  # each GET is 200: fresh from the cache, then stale
            assert client.get(manifest_url, params=ns(origin)).status_code == 200
            return metric_total(client.get("/metrics").text, "registry_mirror_stale_answers_total")

        # Past tag_ttl the mirror must revalidate, and the origin is gone: it answers stale.
        wait_until(stale_answers, lambda total: total > stale_before, "tag_ttl expiry")
        for method in ("GET", "HEAD"):
            stale = client.request(method, manifest_url, params=ns(origin))
            assert stale.status_code == 200, stale.text
            assert stale.headers["docker-content-digest"] == digest
        assert client.get(f"/v2/test/stale/manifests/{digest}", params=ns(origin)).status_code == 200
        stale_after = metric_total(client.get("/metrics").text, "registry_mirror_stale_answers_total")
        assert stale_after >= stale_before + 1
        # A tag it never saw cannot be served stale: a fast OCI error instead.
        unknown = client.get("/v2/test/stale/manifests/v2", params=ns(origin))
        assert unknown.status_code == 503
    assert_no_server_errors(mirror)
