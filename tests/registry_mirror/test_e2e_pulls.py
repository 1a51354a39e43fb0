"""Real clients pull through a real mirror: ctr (--hosts-dir), CRI PullImage, skopeo, oras-py.

The origin's own access log is the proof: every blob GET it answered came from the mirror's user
agent, a second pull into an empty containerd store reached it for no blob at all, and with the
mirror stopped containerd fell back to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MirrorFactory, TestImages
from tests.registry_mirror.test_e2e_support import MIRROR_USER_AGENT, start_mirror
from tests.support.clients import oras_pull, skopeo_copy_from
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.images import PushedImage, file_digest
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration


def _pulled_image(images: TestImages, which: str) -> PushedImage:
    return images.multi.child("linux/amd64") if which == "multi" else getattr(images, which)


def _assert_blobs_came_through_mirror(origin: OriginRegistry, marker: int, image: PushedImage) -> None:
    gets = origin.blob_gets(since=marker)
    assert {e.blob_digest for e in gets} == {b.digest for b in image.blobs}
    assert all(e.user_agent.startswith(MIRROR_USER_AGENT) and e.status in (200, 206) for e in gets), gets


@pytest.mark.parametrize("which", ["app", "docker", "multi"])
def test_ctr_pull_through_mirror_then_from_cache(
    which: str,
    containerd: ContainerdDaemon,
    mirror_process: MirrorFactory,
    origin: OriginRegistry,
    images: TestImages,
    tmp_path: Path,
) -> None:
    mirror = start_mirror(mirror_process, origin, tmp_path)
    write_hosts_toml(containerd.hosts_dir, origin.host, mirror.url, server_url=origin.url)
    image = _pulled_image(images, which)
    ref = images.multi.ref if which == "multi" else image.ref

    marker = origin.clear_log_marker()
    containerd.ctr_pull(ref)
    _assert_blobs_came_through_mirror(origin, marker, image)
    assert {b.digest for b in image.blobs} <= containerd.content_digests()
    if which == "multi":  # only the host's platform was fetched
        arm64 = images.multi.child("linux/arm64")
        assert not {layer.digest for layer in arm64.layers} & containerd.content_digests()

    containerd.remove_all_images()
    marker = origin.clear_log_marker()
    containerd.ctr_pull(ref)
    assert origin.blob_requests(since=marker) == []
    assert {b.digest for b in image.blobs} <= containerd.content_digests()


def test_containerd_falls_back_to_origin_when_mirror_is_down(
    containerd: ContainerdDaemon,
    mirror_process: MirrorFactory,
    origin: OriginRegistry,
    images: TestImages,
    tmp_path: Path,
) -> None:
    mirror = start_mirror(mirror_process, origin, tmp_path)
    write_hosts_toml(containerd.hosts_dir, origin.host, mirror.url, server_url=origin.url)
    mirror.stop()
    marker = origin.clear_log_marker()
    containerd.ctr_pull(images.app.ref)
    gets = origin.blob_gets(since=marker)
    assert {e.blob_digest for e in gets} == {b.digest for b in images.app.blobs}
    assert all(e.user_agent.startswith("containerd/") for e in gets)
    assert containerd.cri_pull(images.docker.ref) == images.docker.config.digest


def test_cri_pull_through_mirror(
    containerd: ContainerdDaemon,
    mirror_process: MirrorFactory,
    origin: OriginRegistry,
    images: TestImages,
    tmp_path: Path,
) -> None:
    mirror = start_mirror(mirror_process, origin, tmp_path)
    write_hosts_toml(containerd.hosts_dir, origin.host, mirror.url, server_url=origin.url)
    marker = origin.clear_log_marker()
    assert containerd.cri_pull(images.app.ref) == images.app.config.digest
    assert images.app.ref in containerd.image_refs("k8s.io")
    _assert_blobs_came_through_mirror(origin, marker, images.app)
    manifests = origin.manifest_requests(marker)
    assert manifests and all(e.user_agent.startswith(MIRROR_USER_AGENT) for e in manifests)


def test_skopeo_copy_through_mirror(
    mirror_process: MirrorFactory, origin: OriginRegistry, images: TestImages, tmp_path: Path
) -> None:
    mirror = start_mirror(mirror_process, origin, tmp_path)  # no ?ns=: the default upstream
    for image in (images.app, images.docker):
        marker = origin.clear_log_marker()
        out = tmp_path / image.repo.replace("/", "_")
        skopeo_copy_from(f"{mirror.host}/{image.repo}:{image.tag}", out)
        for blob in image.blobs:
            assert file_digest(out / blob.digest.split(":")[1]) == blob.digest
        _assert_blobs_came_through_mirror(origin, marker, image)
    marker = origin.clear_log_marker()
    skopeo_copy_from(f"{mirror.host}/{images.app.repo}:{images.app.tag}", tmp_path / "again")
    assert origin.blob_requests(since=marker) == []


def test_oras_pull_artifact_through_mirror(
    mirror_process: MirrorFactory, origin: OriginRegistry, images: TestImages, tmp_path: Path
) -> None:
    mirror = start_mirror(mirror_process, origin, tmp_path)
    marker = origin.clear_log_marker()
    pulled = oras_pull(f"{mirror.host}/{images.artifact.repo}:{images.artifact.tag}", tmp_path / "oras")
    assert sorted(p.name for p in pulled) == sorted(images.artifact_files)
    for path in pulled:
        assert file_digest(path) == file_digest(images.artifact_files[path.name])
    gets = origin.blob_gets(since=marker)
    assert {b.digest for b in images.artifact.layers} <= {e.blob_digest for e in gets}
    assert all(e.user_agent.startswith(MIRROR_USER_AGENT) for e in gets)
