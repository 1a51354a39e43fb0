"""A mirror served under a URL path prefix (`--path-prefix /mirror`), pulled by containerd both ways
hosts.toml can name it: containerd's default (it appends `/v2`) and `override_path = true`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import TestImages
from tests.registry_mirror.test_e2e_support import (  # noqa: F401  (prefixed_mirror is a fixture)
    MIRROR_USER_AGENT,
    PrefixedMirror,
    ns,
    prefixed_mirror,
)
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.images import OCI_MANIFEST
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "mirror_path,override_path",
    [
        ("/mirror", False),  # containerd requests /mirror/v2/<name>/...
        ("/mirror", True),  # containerd requests /mirror/<name>/... as written
        ("/mirror/v2", True),  # the other common spelling of override_path
    ],
)
def test_ctr_pull_through_prefixed_mirror(
    mirror_path: str,
    override_path: bool,
    containerd: ContainerdDaemon,
    prefixed_mirror: Callable[..., PrefixedMirror],
    origin: OriginRegistry,
    images: TestImages,
) -> None:
    mirror = prefixed_mirror(origin, "/mirror")
    write_hosts_toml(
        containerd.hosts_dir,
        origin.host,
        f"{mirror.url}{mirror_path}",
        server_url=origin.url,
        override_path=override_path,
    )
    marker = origin.clear_log_marker()
    containerd.ctr_pull(images.docker.ref)
    gets = origin.blob_gets(since=marker)
    # Had the prefix been refused, containerd would have fallen back and fetched these itself.
    assert {e.blob_digest for e in gets} == {b.digest for b in images.docker.blobs}
    assert all(e.user_agent.startswith(MIRROR_USER_AGENT) for e in gets)


def test_prefixed_mirror_refuses_unprefixed_paths(
    prefixed_mirror: Callable[..., PrefixedMirror], origin: OriginRegistry, images: TestImages
) -> None:
    mirror = prefixed_mirror(origin, "/mirror")
    manifest = f"{images.app.repo}/manifests/{images.app.tag}"
    # Without an Accept naming OCI types docker-registry answers 404 for an OCI image.
    with mirror.client(headers={"Accept": OCI_MANIFEST}) as client:
        assert client.get("/mirror/v2/").status_code == 200
        assert client.get(f"/mirror/v2/{manifest}", params=ns(origin)).status_code == 200
        assert client.get(f"/mirror/{manifest}", params=ns(origin)).status_code == 200
        unprefixed = client.get(f"/v2/{manifest}", params=ns(origin))
        assert unprefixed.status_code == 404
        assert unprefixed.json()["errors"][0]["code"] == "NOT_FOUND"
        assert client.get(f"/mirrorx/v2/{manifest}", params=ns(origin)).status_code == 404
    assert httpx.get(f"{mirror.url}/healthz").status_code == 200
