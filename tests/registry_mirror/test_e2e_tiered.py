"""Tiered mirrors (node -> regional -> origin): two node mirrors with `--via` the regional mirror make
one origin fetch per blob between them (the origin's access log), and with the regional mirror down
a node still pulls, from the origin itself."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory, TestImages
from tests.registry_mirror.test_e2e_support import MIRROR_USER_AGENT, start_mirror
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.images import PushedImage
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration


def _pull_all(mirror: MirrorProcess, origin: OriginRegistry, image: PushedImage) -> None:
    """Manifest and every blob through `mirror` as containerd asks (`?ns=`), each body checked."""
    params = {"ns": origin.host}
    accept = {"Accept": image.manifest.media_type}
    with httpx.Client(base_url=mirror.url, timeout=60) as client:
        manifest = client.get(f"/v2/{image.repo}/manifests/{image.tag}", params=params, headers=accept)
        assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == image.manifest.digest
        for blob in image.blobs:
            body = client.get(f"/v2/{image.repo}/blobs/{blob.digest}", params=params)
            assert body.status_code == 200, body.text[:300]
            assert "sha256:" + hashlib.sha256(body.content).hexdigest() == blob.digest


def _via_metric(mirror: MirrorProcess, result: str) -> float:
    text = httpx.get(f"{mirror.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("registry_mirror_via_requests_total") and f'result="{result}"' in line
    )


def test_two_nodes_through_one_regional_mirror_fetch_each_blob_once(
    mirror_process: MirrorFactory, origin: OriginRegistry, images: TestImages, tmp_path: Path
) -> None:
    regional = start_mirror(mirror_process, origin, tmp_path / "regional")
    nodes = [
        start_mirror(
            mirror_process, origin, tmp_path / f"node-{i}", extra_args=["--via", f"{origin.host}={regional.url}"]
        )
        for i in range(2)
    ]
    marker = origin.clear_log_marker()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda node: _pull_all(node, origin, images.app), nodes))
    gets = origin.blob_gets(since=marker)
    assert sorted(e.blob_digest for e in gets) == sorted(b.digest for b in images.app.blobs)  # once each
    assert all(e.user_agent.startswith(MIRROR_USER_AGENT) for e in gets)
    assert all(_via_metric(node, "via") > 0 and _via_metric(node, "fallback") == 0 for node in nodes)


def test_node_pulls_from_the_origin_when_the_regional_mirror_is_down(
    mirror_process: MirrorFactory,
    origin: OriginRegistry,
    images: TestImages,
    containerd: ContainerdDaemon,
    tmp_path: Path,
) -> None:
    regional = start_mirror(mirror_process, origin, tmp_path / "regional")
    node = start_mirror(
        mirror_process, origin, tmp_path / "node", extra_args=["--via", f"{origin.host}={regional.url}"]
    )
    regional.stop()
    write_hosts_toml(containerd.hosts_dir, origin.host, node.url, server_url=origin.url)
    marker = origin.clear_log_marker()
    containerd.ctr_pull(images.docker.ref)
    gets = origin.blob_gets(since=marker)
    assert {e.blob_digest for e in gets} == {b.digest for b in images.docker.blobs}
    assert all(e.user_agent.startswith(MIRROR_USER_AGENT) for e in gets)  # the node, not containerd's fallback
    assert _via_metric(node, "fallback") >= 1 and _via_metric(node, "skipped") >= 1  # one timeout, then skipped
