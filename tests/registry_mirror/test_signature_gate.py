"""The signature gate in process, against a real docker-registry (behind nginx where the test
needs a referrers API, which docker-registry 2.8 lacks, or an outage): verdict caching with an
injected clock, failed lookups never cached, signatures found through referrers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from nvme_cache import Digest
from registry_mirror.api import Mirror
from registry_mirror.config._settings import CacheSettings, Settings, UpstreamSettings
from registry_mirror.runtime import build_mirror
from registry_mirror.signatures import SignatureGate, SignatureLookup, SignaturePolicy, load_public_key
from registry_mirror.signatures._gate import policy_version
from tests.support.cosign_signer import SIGNATURE_ARTIFACT_TYPE, CosignSigner, simple_signing_payload
from tests.support.images import OCI_MANIFEST, PushedImage, push_manifest, push_multilayer_image
from tests.support.nginx import NginxServer
from tests.support.origin import OriginRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    mirror: Mirror
    gate: SignatureGate
    clock: Clock
    upstream: str


async def _setup(
    tmp_path: Path, upstream_host: str, upstream_url: str, signer: CosignSigner, *, enforce: bool = True
) -> Setup:
    settings = Settings(
        upstreams=(UpstreamSettings(name=upstream_host, url=upstream_url),),
        default_upstream=upstream_host,
        negative_ttl=0.0,
        tag_ttl=0.0,
        cache=CacheSettings(directory=tmp_path / "cache"),
    )
    mirror = build_mirror(settings)
    mirror.store.open()
    clock = Clock()
    policy = SignaturePolicy("p", upstream_host, ("gate/*",), (load_public_key(signer.public_pem()),), enforce)
    gate = SignatureGate([policy], SignatureLookup(mirror.manifests.get, mirror.store), refusal_ttl=30, clock=clock)
    return Setup(mirror, gate, clock, upstream_host)


@pytest.fixture
async def closing() -> AsyncIterator[list[Mirror]]:
    mirrors: list[Mirror] = []
    yield mirrors
    for mirror in mirrors:
        await mirror.upstreams.aclose()
        await mirror.store.aclose()


async def _verdict(setup: Setup, image: PushedImage) -> str:
    target = setup.mirror.upstreams.resolve(setup.upstream, image.repo)
    manifest = await setup.mirror.manifests.get(target, Digest.parse(image.manifest.digest), [OCI_MANIFEST])
    verdict = await setup.gate.check_manifest(target, manifest)
    assert verdict is not None
    return f"{verdict.result}{' (cached)' if verdict.cached else ''}: {verdict.reason}"


async def test_a_refusal_is_cached_for_its_ttl_then_a_new_signature_is_seen(
    origin: OriginRegistry, tmp_path: Path, closing: list[Mirror]
) -> None:
    signer = CosignSigner()
    image = push_multilayer_image(origin, "gate/late", "v1", (8 << 10,), seed="gate-late", workdir=tmp_path)
    setup = await _setup(tmp_path, origin.host, origin.url, signer)
    closing.append(setup.mirror)
    assert await _verdict(setup, image) == "refused: no signature found"
    signer.attach(origin, image.repo, image.manifest.digest)
    setup.clock.now += 29
    assert await _verdict(setup, image) == "refused (cached): no signature found"
    setup.clock.now += 2
    assert (await _verdict(setup, image)).startswith("verified: signed by key ")
    setup.clock.now += 10_000  # a verified verdict does not expire
    assert (await _verdict(setup, image)).startswith("verified (cached): signed by key ")


async def test_a_failed_lookup_refuses_or_warns_and_is_never_cached(
    origin: OriginRegistry, tmp_path: Path, closing: list[Mirror]
) -> None:
    signer = CosignSigner()
    image = push_multilayer_image(origin, "gate/outage", "v1", (8 << 10,), seed="gate-outage", workdir=tmp_path)
    signer.attach(origin, image.repo, image.manifest.digest)
    front = NginxServer.proxy(tmp_path / "front", origin.url).start()
    try:
        for enforce, expected in ((True, "refused"), (False, "warned")):
            setup = await _setup(tmp_path / str(enforce), front.host, front.url, signer, enforce=enforce)
            closing.append(setup.mirror)
            target = setup.mirror.upstreams.resolve(front.host, image.repo)
            manifest = await setup.mirror.manifests.get(target, Digest.parse(image.manifest.digest), [OCI_MANIFEST])
            front.stop()
            verdict = await setup.gate.check_manifest(target, manifest)
            assert verdict is not None and verdict.result == expected and not verdict.cached
            assert "signatures could not be fetched" in verdict.reason
            front.start()  # same port: the upstream is back, and nothing remembered the failure
            verdict = await setup.gate.check_manifest(target, manifest)
            assert verdict is not None and verdict.result == "verified" and not verdict.cached
            # Warm: verified with the upstream down.
            front.stop()
            verdict = await setup.gate.check_manifest(target, manifest)
            assert verdict is not None and verdict.result == "verified" and verdict.cached
            front.start()
    finally:
        front.stop()


async def test_signatures_attached_as_referrers_count(
    origin: OriginRegistry, tmp_path: Path, closing: list[Mirror]
) -> None:
    signer, stranger = CosignSigner(), CosignSigner()
    image = push_multilayer_image(origin, "gate/referred", "v1", (8 << 10,), seed="gate-ref", workdir=tmp_path)
    other = push_multilayer_image(origin, "gate/referred-other", "v1", (8 << 10,), seed="gate-ref2", workdir=tmp_path)

    def referrer(repo: str, digest: str, by: CosignSigner) -> dict[str, object]:
        payload = simple_signing_payload(f"{origin.host}/{repo}", digest)
        body = by.signature_manifest(origin, repo, payload, by.sign(payload), SIGNATURE_ARTIFACT_TYPE)
        pushed = push_manifest(origin, repo, "sha256:" + hashlib.sha256(body).hexdigest(), body, OCI_MANIFEST)
        return {"mediaType": OCI_MANIFEST, "digest": pushed, "size": len(body), "artifactType": SIGNATURE_ARTIFACT_TYPE}

    def index(*descriptors: dict[str, object]) -> str:
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": list(descriptors),
            },
            separators=(",", ":"),
        )

    # docker-registry 2.8 has no referrers API: nginx answers it, as a 1.1 registry would.
    answers = {
        image.manifest.digest: index(referrer(image.repo, image.manifest.digest, signer)),
        other.manifest.digest: index(referrer(other.repo, other.manifest.digest, stranger)),
    }
    locations = " ".join(
        f"location = /v2/{repo}/referrers/{digest} {{ default_type application/vnd.oci.image.index.v1+json;"
        f" return 200 '{body}'; }}"
        for repo, digest, body in (
            (image.repo, image.manifest.digest, answers[image.manifest.digest]),
            (other.repo, other.manifest.digest, answers[other.manifest.digest]),
        )
    )
    front = NginxServer.proxy(tmp_path / "front", origin.url, locations).start()
    try:
        setup = await _setup(tmp_path, front.host, front.url, signer)
        closing.append(setup.mirror)
        assert (await _verdict(setup, image)).startswith("verified: signed by key ")
        assert await _verdict(setup, other) == "refused: none of its 1 signatures is by a trusted key over this digest"
        assert any("/referrers/" in line for line in front.access_lines())
    finally:
        front.stop()


def test_the_policy_version_changes_with_anything_a_verdict_depends_on() -> None:
    key = load_public_key(CosignSigner().public_pem())
    base = SignaturePolicy("p", "r.example", ("a/*",), (key,), True)
    versions = {
        policy_version([policy])
        for policy in (
            base,
            replace(base, name="q"),
            replace(base, repositories=("b/*",)),
            replace(base, enforce=False),
            replace(base, keys=(load_public_key(CosignSigner().public_pem()),)),
            replace(base, upstream="s.example"),
        )
    }
    assert len(versions) == 6
    assert policy_version([base]) == policy_version([replace(base)])


def test_manifests_outside_every_policy_have_no_verdict() -> None:
    key = load_public_key(CosignSigner().public_pem())
    policy = SignaturePolicy("p", "r.example", ("team/*",), (key,), True)
    assert policy.matches("r.example", "team/app") and not policy.matches("r.example", "other/app")
    assert not policy.matches("s.example", "team/app")
