"""Cached digests are served to another (upstream, repository) only after that upstream confirms
the repository holds them (issue 11, item 6). Real docker-registry origins, a real mirror."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from nvme_cache import Digest
from registry_mirror.api import OCIError
from registry_mirror.config import UpstreamSettings
from registry_mirror.policy import Provenance
from registry_mirror.upstream import Target
from registry_mirror.upstream._client import UpstreamClient
from tests.conftest import MirrorFactory, TestImages
from tests.support.images import OCI_MANIFEST, push_blob
from tests.support.origin import OriginRegistry


def _heads_and_gets(origin: OriginRegistry, marker: int, digest: str) -> tuple[int, int]:
    entries = [e for e in origin.entries_since(marker) if digest in e.path]
    return sum(e.method == "HEAD" for e in entries), sum(e.method == "GET" for e in entries)


def test_cached_digests_need_the_other_upstream_to_confirm(
    origin: OriginRegistry,
    images: TestImages,
    origin_factory: Callable[..., OriginRegistry],
    mirror_process: MirrorFactory,
) -> None:
    other = origin_factory()
    mirror = mirror_process({origin.host: origin.url, other.host: other.url})
    layer, manifest = images.app.layers[0], images.app.manifest
    with mirror.client() as client:
        own = client.get(f"/v2/{images.app.repo}/blobs/{layer.digest}", params={"ns": origin.host})
        assert own.status_code == 200 and len(own.content) == layer.size
        assert (
            client.get(
                f"/v2/{images.app.repo}/manifests/v1", params={"ns": origin.host}, headers={"Accept": OCI_MANIFEST}
            ).status_code
            == 200
        )

        # Another upstream, another repository on the same upstream: neither holds it.
        for ns, repo in ((other.host, "any/thing"), (origin.host, "test/not-there")):
            for method in ("GET", "HEAD"):
                blob = client.request(method, f"/v2/{repo}/blobs/{layer.digest}", params={"ns": ns})
                assert blob.status_code == 404, (ns, repo, method)
                assert layer.size != len(blob.content)
            by_digest = client.get(
                f"/v2/{repo}/manifests/{manifest.digest}", params={"ns": ns}, headers={"Accept": OCI_MANIFEST}
            )
            assert by_digest.status_code == 404, (ns, repo)
        # The upstream that does hold it confirms once (a HEAD), then the cache serves.
        push_blob(other, "team/copy", _layer_bytes(client, images, layer.digest))
        marker = other.clear_log_marker()
        for _ in range(3):
            copy = client.get(f"/v2/team/copy/blobs/{layer.digest}", params={"ns": other.host})
            assert copy.status_code == 200 and len(copy.content) == layer.size
        assert _heads_and_gets(other, marker, layer.digest) == (1, 0)
        metrics = client.get("/metrics").text
    assert "registry_mirror_cross_repository_refusals_total" in metrics
    assert 'registry_mirror_cross_repository_confirmations_total{result="confirmed"' in metrics

    # The pair that fetched it is remembered across a restart: no HEAD, no GET at its origin.
    mirror.restart()
    marker = origin.clear_log_marker()
    with mirror.client() as client:
        again = client.get(f"/v2/{images.app.repo}/blobs/{layer.digest}", params={"ns": origin.host})
        assert again.status_code == 200
    assert _heads_and_gets(origin, marker, layer.digest) == (0, 0)


def _layer_bytes(client: httpx.Client, images: TestImages, digest: str) -> bytes:
    return client.get(f"/v2/{images.app.repo}/blobs/{digest}", params={"ns": images.app.registry}).content


def test_a_confirmation_expires_after_its_ttl(origin: OriginRegistry, tmp_path: Path) -> None:
    """Against the real origin, with the clock injected: a confirmation is asked again after the TTL,
    and a repository that lost the digest is refused from then on."""
    data = os.urandom(4096)
    digest = push_blob(origin, "test/ttl-a", data)
    now = [1000.0]
    provenance = Provenance(tmp_path / "provenance.sqlite", confirm_ttl=30.0, clock=lambda: now[0])
    provenance.open()
    client = UpstreamClient(
        UpstreamSettings(name=origin.host, url=origin.url), max_body_bytes=1 << 20, chunk_size=1 << 20
    )
    holder, other = Target(client, origin.host, "test/ttl-a"), Target(client, origin.host, "test/ttl-b")

    async def scenario() -> None:
        marker = origin.clear_log_marker()
        await provenance.admit(holder, Digest.parse(digest), "blob", origin_answers=False)
        now[0] += 29
        await provenance.admit(holder, Digest.parse(digest), "blob", origin_answers=False)
        assert _heads_and_gets(origin, marker, digest) == (1, 0)
        now[0] += 2
        await provenance.admit(holder, Digest.parse(digest), "blob", origin_answers=False)
        assert _heads_and_gets(origin, marker, digest) == (2, 0)
        with pytest.raises(OCIError) as refused:
            await provenance.admit(other, Digest.parse(digest), "blob", origin_answers=False)
        assert refused.value.status == 404
        provenance.record(other, Digest.parse(digest))  # fetched for it: no question asked any more
        await provenance.admit(other, Digest.parse(digest), "blob", origin_answers=False)
        await client.aclose()

    asyncio.run(scenario())
    provenance.close()
