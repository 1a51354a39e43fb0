"""Issue 5 end to end: a real docker-registry origin, a real `registry-mirror serve --catalog`
process and containerd's `ctr` as the client.

The node pulled v1 earlier (its 64 MiB uncompressed weights layer is cached). CI then builds v2
(~3% of the weights changed), and runs keygen, build --delta-from v1, sign and push. The mirror
picks the catalog up, prefetches v2 (the changed layer rebuilt from v1 + the delta) and pins it;
the origin's access log proves the full changed layer was never fetched, neither by the prefetch
nor by the `ctr` pull of v2 that follows. Tampered catalogs are then refused with a metric while
the active catalog and the cache stay as they were."""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog.models import Catalog, catalog_to_json, parse_catalog
from catalog.signing import envelope_to_json, generate_keypair, load_private_key, sign
from registry_mirror.cli._catalog import main as catalog_cli
from tests.catalog.conftest import tar_of
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.images import push_blob, push_manifest
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

WEIGHTS = 64 << 20
REPO, CATALOG = "team/model", "ci/catalogs"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def weights(version: int) -> bytes:
    data = bytearray(random.Random(7).randbytes(WEIGHTS))
    if version == 2:  # ~3%: one region rewritten, one inserted (shifts every later offset)
        patch = random.Random(8)
        data[5 << 20 : (5 << 20) + 1_000_000] = patch.randbytes(1_000_000)
        data[40 << 20 : 40 << 20] = patch.randbytes(1_000_000)
    return bytes(data)


def push_image(origin: OriginRegistry, tag: str, version: int) -> dict[str, str]:
    """An image with a small app layer (same in both versions) and the weights layer (uncompressed)."""
    layers = [tar_of("app/run.sh", b"#!/bin/sh\necho hi\n"), tar_of("model/weights.bin", weights(version))]
    descs = [{"mediaType": LAYER_TAR, "digest": push_blob(origin, REPO, layer), "size": len(layer)} for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
            "config": {"Labels": {"version": str(version)}},
        }
    ).encode()
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": push_blob(origin, REPO, config),
        "size": len(config),
    }
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": descs}
    ).encode()
    push_manifest(origin, REPO, tag, manifest, OCI_MANIFEST)
    return {
        "weights": str(descs[1]["digest"]),
        "weights_size": str(descs[1]["size"]),
        "config": str(config_desc["digest"]),
    }


def metric(mirror: MirrorProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{mirror.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(3))
    return total


def wait_until(check: Callable[[], bool], what: str, mirror: MirrorProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen; mirror log:\n{mirror.log_text()[-4000:]}")
        time.sleep(0.2)


def resign(cat: Catalog, key: Ed25519PrivateKey) -> bytes:
    return envelope_to_json(sign(catalog_to_json(cat), key))


def ci(*argv: str) -> None:
    assert catalog_cli(["catalog", *argv]) == 0, argv


def test_catalog_update_costs_the_origin_only_the_delta(
    origin_factory: Callable[..., OriginRegistry],
    mirror_process: Callable[..., MirrorProcess],
    containerd: ContainerdDaemon,
    tmp_path: Path,
) -> None:
    origin = origin_factory()
    v1 = push_image(origin, "v1", 1)
    v2 = push_image(origin, "v2", 2)
    ci("keygen", "--private", str(tmp_path / "key.pem"), "--public", str(tmp_path / "key.pub"))
    mirror = mirror_process(
        {origin.host: origin.url},
        extra_args=[
            "--catalog",
            f"{origin.host}/{CATALOG}:prod",
            "--trusted-key",
            str(tmp_path / "key.pub"),
            "--catalog-insecure",
            "--catalog-poll-interval",
            "0.5",
        ],
    )
    write_hosts_toml(containerd.hosts_dir, origin.host, mirror.url, server_url=origin.url)

    # The node ran v1: its layers are in the mirror's cache.
    containerd.ctr_pull(f"{origin.host}/{REPO}:v1")
    assert v1["weights"] in {e.blob_digest for e in origin.blob_gets()}

    # CI: build v2's catalog with a delta from v1, sign it, push it next to the images.
    deltas = tmp_path / "deltas"
    ci(
        "build",
        "--image",
        f"{origin.host}/{REPO}:v2",
        "--delta-from",
        f"{origin.host}/{REPO}:v1",
        "--delta-dir",
        str(deltas),
        "--name",
        "prod",
        "--serial",
        "2",
        "--expires-in",
        "1d",
        "--out",
        str(tmp_path / "c.json"),
        "--insecure",
    )
    ci("sign", "--key", str(tmp_path / "key.pem"), "--out", str(tmp_path / "signed.json"), str(tmp_path / "c.json"))
    cat = parse_catalog((tmp_path / "c.json").read_bytes())
    [delta] = cat.deltas
    assert delta.to_digest == v2["weights"] and delta.delta.size < int(v2["weights_size"]) // 10
    ci_marker = origin.clear_log_marker()  # what CI itself read from the origin is not the mirror's cost
    ci("push", str(tmp_path / "signed.json"), f"{origin.host}/{CATALOG}:prod", "--insecure", "--delta-dir", str(deltas))

    wait_until(
        lambda: metric(mirror, "catalog_prefetch_blobs_total", catalog="prod") >= len(cat.blobs),
        "the prefetch of every catalog blob",
        mirror,
    )
    assert metric(mirror, "catalog_serial", catalog="prod") == 2
    assert metric(mirror, "catalog_prefetch_blobs_total", catalog="prod", result="failed") == 0
    assert metric(mirror, "catalog_delta_rebuilds_total", result="ok") == 1
    assert metric(mirror, "catalog_delta_saved_bytes_total") == int(v2["weights_size"]) - delta.delta.size

    # containerd pulls v2 through the mirror: everything is already on the node's mirror.
    containerd.ctr_pull(f"{origin.host}/{REPO}:v2")
    mirror_gets = origin.blob_gets(since=ci_marker)
    fetched = {e.blob_digest for e in mirror_gets}
    assert v2["weights"] not in fetched, "the full changed layer came from the origin"
    assert delta.delta.digest in fetched
    assert sum(e.bytes for e in mirror_gets) < int(v2["weights_size"]) // 10

    # Tampered variants: each refused with a metric; the active catalog and the cache stay.
    cache_files = sorted(p.name for p in mirror.cache_dir.rglob("*") if p.is_file() and "sha256" in str(p))
    key = load_private_key(tmp_path / "key.pem")
    now = datetime.now(UTC).replace(microsecond=0)
    good = json.loads((tmp_path / "signed.json").read_bytes())
    edited = dict(
        good, payload=base64.b64encode(base64.b64decode(good["payload"]).replace(b'"serial":2', b'"serial":9')).decode()
    )
    variants = {
        "signature": json.dumps(edited).encode(),
        "signature ": resign(replace(cat, serial=10), generate_keypair()),  # a key the mirror does not trust
        "expired": resign(
            replace(cat, serial=11, created=now - timedelta(days=2), expires=now - timedelta(days=1)), key
        ),
        "serial": resign(replace(cat, serial=1), key),
    }
    for label, envelope in variants.items():
        reason = label.strip()
        before = metric(mirror, "catalog_refusals_total", reason=reason)
        path = tmp_path / "tampered.json"
        path.write_bytes(envelope)
        ci("push", str(path), f"{origin.host}/{CATALOG}:prod", "--insecure")
        wait_until(
            lambda: metric(mirror, "catalog_refusals_total", reason=reason) == before + 1,  # noqa: B023
            f"refusal of the {reason} variant",
            mirror,
        )
        assert metric(mirror, "catalog_serial", catalog="prod") == 2
    assert sorted(p.name for p in mirror.cache_dir.rglob("*") if p.is_file() and "sha256" in str(p)) == cache_files
    assert "refused (signature)" in mirror.log_text() and "refused (expired)" in mirror.log_text()
