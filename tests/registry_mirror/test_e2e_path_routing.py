"""Clients that send no `?ns=` (podman, CRI-O, buildah) name the upstream as the first path component:
real podman with a private registries.conf mirror `location = "MIRROR/<upstream>"` pulls with every
blob coming through the mirror, and the blocklist sees the routed name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory, TestImages
from tests.registry_mirror.test_e2e_support import MIRROR_USER_AGENT
from tests.support.clients import podman_pull
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

UPSTREAM = "origin.test"  # a name that can be a path component (no port)


def _registries_conf(path: Path, origin: OriginRegistry, mirror_host: str) -> Path:
    path.write_text(f"""unqualified-search-registries = []

[[registry]]
prefix = "{origin.host}"
location = "{origin.host}"
insecure = true

[[registry.mirror]]
location = "{mirror_host}/{UPSTREAM}"
insecure = true
""")
    return path


def test_podman_pulls_through_a_path_routed_upstream(
    mirror_process: MirrorFactory, origin: OriginRegistry, images: TestImages, tmp_path: Path
) -> None:
    # The default upstream is a dead port: only path routing can reach the origin.
    mirror = mirror_process(
        {UPSTREAM: origin.url, "default.test": "http://127.0.0.1:9"}, extra_args=["--default-upstream", "default.test"]
    )
    conf = _registries_conf(tmp_path / "registries.conf", origin, mirror.host)
    marker = origin.clear_log_marker()
    podman_pull(images.app.ref, conf, tmp_path / "podman")
    gets = origin.blob_gets(since=marker)
    assert {e.blob_digest for e in gets} == {b.digest for b in images.app.blobs}
    requests = origin.entries_since(marker)
    assert requests and all(e.user_agent.startswith(MIRROR_USER_AGENT) for e in requests), requests  # no fallback


def test_path_routing_only_for_configured_names_and_the_blocklist_sees_the_route(
    mirror_process: MirrorFactory, origin: OriginRegistry, images: TestImages, tmp_path: Path
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(f"""builtin_upstreams = false
default_upstream = "{UPSTREAM}"
[upstreams."{UPSTREAM}"]
url = "{origin.url}"
[[blocklist]]
upstream = "{UPSTREAM}"
repository = "test/docker"
reason = "INC-1: blocked"
""")
    mirror = mirror_process({}, extra_args=["--config", str(config)])
    accept = {
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    }
    with httpx.Client(base_url=mirror.url, timeout=30, headers=accept) as client:
        routed = client.get(f"/v2/{UPSTREAM}/test/app/manifests/v1")
        assert routed.status_code == 200 and routed.headers["Docker-Content-Digest"] == images.app.manifest.digest
        assert client.get("/v2/test/app/manifests/v1").status_code == 200  # unprefixed: the default upstream
        unknown = client.get("/v2/other.test/test/app/manifests/v1")  # not an upstream: a repository name
        assert unknown.status_code == 404
        blocked = client.get(f"/v2/{UPSTREAM}/test/docker/manifests/v1")
        assert blocked.status_code == 403 and "INC-1" in blocked.text
        with_ns = client.get(f"/v2/{UPSTREAM}/test/app/manifests/v1", params={"ns": UPSTREAM})
        assert with_ns.status_code == 404  # an ns is taken as sent: repository origin.test/test/app
