"""Cache-first: an image whose manifest and blobs are cached keeps being pulled by tag with the
origin down, after a mirror restart, by any client whose Accept admits the cached manifest."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import metric_total, ns, start_mirror
from tests.support.clients import skopeo_copy_from
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.images import file_digest, push_multilayer_image

pytestmark = pytest.mark.integration

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _stale_answers(mirror_url: str, route: str) -> float:
    text = httpx.get(f"{mirror_url}/metrics", timeout=10).text
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("registry_mirror_stale_answers_total") and f'route="{route}"' in line
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


@pytest.mark.parametrize("tag_ttl", ["0s", "1h"], ids=["revalidate-stale", "fresh"])
def test_pull_by_tag_after_restart_with_origin_down(
    tag_ttl: str, containerd: ContainerdDaemon, mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin = origin_factory()
    image = push_multilayer_image(
        origin, "test/cachefirst", "v1", (300 << 10, 200 << 10), seed=f"cf-{tag_ttl}", workdir=tmp_path
    )
    mirror = start_mirror(mirror_process, origin, tmp_path, extra_toml=f'tag_ttl = "{tag_ttl}"')
    write_hosts_toml(containerd.hosts_dir, origin.host, mirror.url, server_url=origin.url)
    containerd.ctr_pull(image.ref)  # everything cached through the mirror

    mirror.restart()
    origin.stop()  # containerd's fallback (`server`) is gone too: only the mirror can answer
    containerd.remove_all_images()
    assert not {b.digest for b in image.blobs} & containerd.content_digests()
    containerd.ctr_pull(image.ref)
    assert {b.digest for b in image.blobs} <= containerd.content_digests()

    # skopeo sends another Accept (several lines, list types first): the cached OCI manifest admits it.
    out = tmp_path / "skopeo"
    skopeo_copy_from(f"{mirror.host}/{image.repo}:{image.tag}", out, extra_args=["--src-tls-verify=false"])
    for blob in image.blobs:
        assert file_digest(out / blob.digest.split(":")[1]) == blob.digest

    with httpx.Client(base_url=mirror.url, timeout=10) as client:
        url = f"/v2/{image.repo}/manifests/{image.tag}"
        # An Accept that does not admit the cached media type gets no wrong format: a fast 503.
        refused = client.get(url, params=ns(origin), headers={"Accept": DOCKER_V2})
        assert refused.status_code == 503, refused.text
        anything = client.get(url, params=ns(origin), headers={"Accept": "*/*"})
        assert anything.status_code == 200
        assert anything.headers["docker-content-digest"] == image.manifest.digest
    stale = _stale_answers(mirror.url, "manifest")
    if tag_ttl == "0s":
        assert stale >= 2  # containerd's and skopeo's revalidations failed: served stale
    else:
        assert stale == 0  # fresh within its TTL: the origin was never asked
    assert "Traceback" not in mirror.log_text()


def test_tag_past_max_stale_is_not_served(mirror_process: MirrorFactory, origin_factory, tmp_path: Path) -> None:
    origin = origin_factory()
    image = push_multilayer_image(origin, "test/stalemax", "v1", (100 << 10,), seed="stalemax", workdir=tmp_path)
    mirror = start_mirror(mirror_process, origin, tmp_path, extra_toml='tag_ttl = "0s"\nmax_stale = "0s"')
    with httpx.Client(base_url=mirror.url, timeout=10, headers={"Accept": OCI_MANIFEST}) as client:
        url = f"/v2/{image.repo}/manifests/{image.tag}"
        assert client.get(url, params=ns(origin)).status_code == 200
        origin.stop()
        mirror.restart()
        down = client.get(url, params=ns(origin))
        assert down.status_code == 503 and down.json()["errors"][0]["code"] == "UPSTREAM_UNAVAILABLE"
        # By digest it is still served: the bytes are cached and verified.
        by_digest = client.get(f"/v2/{image.repo}/manifests/{image.manifest.digest}", params=ns(origin))
        assert by_digest.status_code == 200
    assert metric_total(httpx.get(f"{mirror.url}/metrics").text, "registry_mirror_stale_answers_total") == 0
