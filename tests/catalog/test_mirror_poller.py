"""Mirror side in-process: the real wiring (Mirror, BlobStore, aiohttp upstream client) against a
real docker-registry origin; catalogs built, signed and pushed with the CI-side code.

Polls are driven by hand (`poll_once`), so each step is checked in order; metrics are read from the
app's Prometheus registry."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from catalog.artifact import EMPTY_CONFIG, EMPTY_DIGEST, artifact_manifest
from catalog.build import build_catalog
from catalog.models import Catalog, Delta, DeltaBlob, catalog_to_json
from catalog.poller import CatalogPoller, pin_name
from catalog.push import push_catalog
from catalog.registry import RegistryClient, parse_reference
from catalog.service import CatalogOptions, CatalogService, delta_sources
from catalog.signing import envelope_to_json, generate_keypair, sign
from nvme_cache import Digest
from oci import OCI_MANIFEST
from registry_mirror.api import Mirror
from registry_mirror.config._settings import CacheSettings, Settings, UpstreamSettings
from registry_mirror.runtime import build_mirror
from registry_mirror.runtime._catalogs import catalog_source_for
from registry_mirror.telemetry import install_metrics
from registry_mirror.upstream import origin_source

from .conftest import Origin, PushedImages

pytestmark = pytest.mark.integration

CATALOG_REPO = "test/catalogs"
NOW = datetime.now(UTC).replace(microsecond=0)


def metric(name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for family in install_metrics().collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def keys() -> tuple[object, object]:
    key = generate_keypair()
    return key, key.public_key()


@pytest.fixture(scope="module")
def built(origin: Origin, images: PushedImages, tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, Path]:
    """Catalog of test/model:v2 (amd64) with a delta from v1, and the directory holding the delta."""
    delta_dir = tmp_path_factory.mktemp("deltas")
    with RegistryClient(origin.address, insecure=True) as client:
        cat = build_catalog(
            client,
            [parse_reference(f"{origin.address}/{images.repo}:v2")],
            "prod",
            10,
            NOW,
            timedelta(days=1),
            platforms=("linux/amd64",),
            delta_from=parse_reference(f"{origin.address}/{images.repo}:v1"),
            delta_dir=delta_dir,
        )
    assert len(cat.deltas) == 1
    return cat, delta_dir


def publish(origin: Origin, tag: str, envelope: bytes, delta_dir: Path | None = None) -> None:
    with RegistryClient(origin.address, insecure=True) as client:
        push_catalog(client, parse_reference(f"{origin.address}/{CATALOG_REPO}:{tag}"), envelope, delta_dir)


def publish_unchecked(origin: Origin, tag: str, envelope: bytes) -> None:
    """Like `catalog push`, without its size check: what a hostile registry could serve."""
    with RegistryClient(origin.address, insecure=True) as client:
        client.push_blob(CATALOG_REPO, EMPTY_DIGEST, len(EMPTY_CONFIG), EMPTY_CONFIG)
        client.push_blob(CATALOG_REPO, "sha256:" + hashlib.sha256(envelope).hexdigest(), len(envelope), envelope)
        client.push_manifest(CATALOG_REPO, tag, artifact_manifest(envelope, []), OCI_MANIFEST)


def signed(cat: Catalog, key: object) -> bytes:
    return envelope_to_json(sign(catalog_to_json(cat), key))  # type: ignore[arg-type]


@pytest.fixture
async def mirror(origin: Origin, tmp_path: Path) -> AsyncIterator[Mirror]:
    install_metrics()
    settings = Settings(
        upstreams=(UpstreamSettings(name=origin.address, url=f"http://{origin.address}"),),
        default_upstream=origin.address,
        cache=CacheSettings(directory=tmp_path / "cache"),
    )
    built_mirror = build_mirror(settings)
    built_mirror.store.open()
    yield built_mirror
    await built_mirror.upstreams.aclose()
    await built_mirror.store.aclose()


def service_for(mirror: Mirror, tag: str, public_key: object, state_dir: Path, origin: Origin) -> CatalogService:
    options = CatalogOptions(
        sources=(f"{origin.address}/{CATALOG_REPO}:{tag}",),
        trusted_keys=(public_key,),  # type: ignore[arg-type]
        state_dir=state_dir,
        poll_interval=3600,
        insecure=True,
    )
    deltas = delta_sources(mirror.store, options)
    # The delta layer right before the origin, as the app builds it.
    blobs = replace(mirror.blobs, layers=(deltas.wrap,))
    service = CatalogService(mirror.store, options, catalog_source_for(blobs), deltas=deltas)
    service.deltas.prepare()
    return service


async def cache_blob(mirror: Mirror, origin: Origin, repo: str, digest: str) -> None:
    target = mirror.upstreams.resolve(origin.address, repo)
    fill = mirror.store.get(Digest.parse(digest), origin_source(target.client, repo, Digest.parse(digest), target.name))
    if not hasattr(fill, "wait"):
        return
    await fill.wait()


def blob_gets(origin: Origin, since: int) -> list[str]:
    with open(origin.log_path, "rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [
        line.split("/blobs/")[1].split(" ")[0] for line in lines if '"GET /v2/' in line and "/blobs/sha256:" in line
    ]


async def test_activation_prefetches_through_delta_and_pins(
    origin: Origin,
    images: PushedImages,
    built: tuple[Catalog, Path],
    keys: tuple[object, object],
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    cat, delta_dir = built
    key, public = keys
    old_weights, new_weights = images.v1["layers"][1]["digest"], images.v2_amd64["layers"][1]["digest"]  # type: ignore[index]
    await cache_blob(mirror, origin, images.repo, old_weights)  # the node ran v1 before
    publish(origin, "flow", signed(cat, key), delta_dir)
    service = service_for(mirror, "flow", public, tmp_path / "state", origin)
    poller = service.pollers[0]
    marker = origin.log_path.stat().st_size

    assert await poller.poll_once() == "activated"
    progress = await poller.wait_prefetch()

    assert progress is not None and progress.complete, progress
    assert all(mirror.store.stat(Digest.parse(b.digest)) for b in cat.blobs)
    assert mirror.store.pins()[pin_name("prod")] == {b.digest for b in cat.blobs}
    fetched = blob_gets(origin, marker)
    assert new_weights not in fetched  # the changed layer never came from the origin in full
    assert cat.deltas[0].delta.digest in fetched
    assert service.deltas.rebuilt == 1
    assert service.deltas.bytes_saved == images.v2_amd64["layers"][1]["size"] - cat.deltas[0].delta.size  # type: ignore[index]
    assert metric("catalog_serial", catalog="prod") == 10
    assert await poller.poll_once() == "unchanged"

    # A restart restores the active catalog from the state file (verified again).
    again = CatalogPoller(
        poller.source,
        store=mirror.store,
        trusted_keys=[public],
        state_dir=tmp_path / "state",  # type: ignore[list-item]
        source_for=catalog_source_for(replace(mirror.blobs, layers=(service.deltas.wrap,))),
        insecure=True,
    )
    await again.restore()
    assert again.active == cat
    await again.wait_prefetch()
    await service.aclose()


def _edit_payload(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["serial"] += 100
    doc["payload"] = base64.b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).decode()
    return json.dumps(doc).encode()


async def test_tampered_catalogs_are_refused_and_change_nothing(
    origin: Origin,
    built: tuple[Catalog, Path],
    keys: tuple[object, object],
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    cat, _ = built
    key, public = keys
    small = replace(cat, name="guard", serial=5, deltas=(), blobs=cat.blobs[:1])
    publish(origin, "guard", signed(small, key))
    service = service_for(mirror, "guard", public, tmp_path / "state", origin)
    poller = service.pollers[0]
    assert await poller.poll_once() == "activated"
    await poller.wait_prefetch()
    state_file = next((tmp_path / "state").glob("*.json"))
    state_before, pins_before = state_file.read_bytes(), mirror.store.pins()
    good = signed(replace(small, serial=6), key)

    variants = {
        "signature": _edit_payload(good),  # payload edited after signing
        "signature ": signed(replace(small, serial=7), generate_keypair()),  # signed with an unknown key
        "expired": signed(
            replace(small, serial=8, created=NOW - timedelta(days=3), expires=NOW - timedelta(days=1)), key
        ),
        "serial": signed(replace(small, serial=4), key),  # lower serial, not a signed rollback
        "serial  ": signed(replace(small, serial=5, expires=NOW + timedelta(days=9)), key),  # same serial: replay
        "too_large": b"{" + b" " * (22 << 20) + b"}",
        "signature  ": good[: len(good) // 2],  # truncated envelope
        "schema": envelope_to_json(sign(b'{"schemaVersion": 1, "name": "guard"}', key)),  # type: ignore[arg-type]
    }
    for label, envelope in variants.items():
        reason = label.strip()
        before = metric("catalog_refusals_total", reason=reason)
        publish_unchecked(origin, "guard", envelope)
        assert await poller.poll_once() == f"refused:{reason}", label
        assert metric("catalog_refusals_total", reason=reason) == before + 1, label
        assert poller.active is not None and poller.active.serial == 5
        assert state_file.read_bytes() == state_before and mirror.store.pins() == pins_before

    # The same refused envelope polled again is not counted twice; a good one then activates.
    before = metric("catalog_refusals_total", reason="schema")
    assert await poller.poll_once() == "refused:schema"
    assert metric("catalog_refusals_total", reason="schema") == before
    publish(origin, "guard", good)
    assert await poller.poll_once() == "activated" and poller.active.serial == 6
    await poller.wait_prefetch()
    await service.aclose()


async def test_rollback_and_signed_rollback(
    origin: Origin,
    built: tuple[Catalog, Path],
    keys: tuple[object, object],
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    cat, _ = built
    key, public = keys
    first = replace(cat, name="rb", serial=1, deltas=(), blobs=cat.blobs[:1])
    second = replace(cat, name="rb", serial=2, deltas=(), blobs=cat.blobs[:2])
    service = service_for(mirror, "rb", public, tmp_path / "state", origin)
    poller = service.pollers[0]
    for version in (first, second):
        publish(origin, "rb", signed(version, key))
        assert await poller.poll_once() == "activated"
        await poller.wait_prefetch()

    rolled = await service.rollback()
    assert rolled["serial"] == 1 and poller.active == first
    assert mirror.store.pins()[pin_name("rb")] == {cat.blobs[0].digest}
    assert service.status()["catalogs"][0]["rolled_back_from"] == 2
    # The registry still publishes serial 2: refused until CI publishes a newer serial.
    assert await poller.poll_once() == "refused:rolled_back"
    publish(origin, "rb", signed(replace(second, serial=3), key))
    assert await poller.poll_once() == "activated" and poller.active.serial == 3
    # A rollback signed by CI (a higher serial, "rollback": true, superseding 3) is allowed.
    rollback = signed(replace(first, serial=4, rollback=True, supersedes=3), key)
    publish(origin, "rb", rollback)
    assert await poller.poll_once() == "activated" and poller.active.serial == 4
    await poller.wait_prefetch()
    # Then 5; replaying the rollback, or 3, activates nothing (issue 11 item 12).
    publish(origin, "rb", signed(replace(second, serial=5), key))
    assert await poller.poll_once() == "activated"
    await poller.wait_prefetch()
    for replayed in (rollback, signed(replace(second, serial=3), key)):
        publish(origin, "rb", replayed)
        assert await poller.poll_once() == "refused:serial"
    assert poller.active.serial == 5
    await service.aclose()


async def test_delta_that_rebuilds_wrong_bytes_falls_back_to_origin(
    origin: Origin,
    images: PushedImages,
    built: tuple[Catalog, Path],
    keys: tuple[object, object],
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    cat, _ = built
    key, public = keys
    old_weights, new_weights = images.v1["layers"][1], images.v2_amd64["layers"][1]  # type: ignore[index]
    await cache_blob(mirror, origin, images.repo, old_weights["digest"])
    bogus_dir = tmp_path / "bogus"
    bogus_dir.mkdir()
    garbage = os.urandom(4096)
    digest = "sha256:" + hashlib.sha256(garbage).hexdigest()
    (bogus_dir / f"sha256-{digest.split(':')[1]}.delta").write_bytes(garbage)
    bad = replace(
        cat,
        name="bad",
        serial=1,
        blobs=tuple(b for b in cat.blobs if b.digest == new_weights["digest"]),
        deltas=(Delta(old_weights["digest"], new_weights["digest"], DeltaBlob(digest, len(garbage))),),
    )
    publish(origin, "bad", signed(bad, key), bogus_dir)
    service = service_for(mirror, "bad", public, tmp_path / "state", origin)
    poller = service.pollers[0]
    marker = origin.log_path.stat().st_size
    mismatches = metric("catalog_delta_rebuilds_total", result="mismatch")

    assert await poller.poll_once() == "activated"
    progress = await poller.wait_prefetch()

    assert progress is not None and progress.complete
    assert mirror.store.stat(Digest.parse(new_weights["digest"])) is not None
    assert new_weights["digest"] in blob_gets(origin, marker)  # fell back to the full blob
    assert service.deltas.fallbacks == 1 and service.deltas.rebuilt == 0
    assert metric("catalog_delta_rebuilds_total", result="mismatch") == mismatches + 1
    assert not list((tmp_path / "state" / "delta-work").iterdir())  # no temp files left
    await service.aclose()
