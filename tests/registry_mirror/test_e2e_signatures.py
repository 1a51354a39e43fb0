"""Signature policy end to end: images signed the way `cosign sign --key` signs them (the test
signer in tests/support/cosign_signer.py), a real docker-registry origin, a real mirror process,
pulled by ctr and skopeo. Unsigned, other-key, replayed and tampered signatures are refused, and
a refused image's blobs are not served under its repository."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.support.clients import skopeo
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.cosign_signer import CosignSigner, signature_tag, simple_signing_payload
from tests.support.images import (
    ALL_MANIFEST_TYPES,
    PushedImage,
    PushedIndex,
    push_multiarch_index,
    push_multilayer_image,
)
from tests.support.mirror import MirrorProcess
from tests.support.net import free_port
from tests.support.origin import OriginRegistry

ACCEPT = ", ".join(ALL_MANIFEST_TYPES)
POLICY = "platform"


@dataclass(frozen=True)
class SignedImages:
    signed: PushedImage
    multi: PushedIndex  # the index signed, the children not
    unsigned: PushedImage
    other_key: PushedImage
    replayed: PushedImage  # carries app's valid signature (of app's digest) at its own tag
    tampered: PushedImage  # payload changed after signing
    warned: PushedImage  # unsigned, under a warn policy
    public_key: Path


@pytest.fixture(scope="module")
def signed_images(origin: OriginRegistry, tmp_path_factory: pytest.TempPathFactory) -> SignedImages:
    work = tmp_path_factory.mktemp("signed-images")
    trusted, stranger = CosignSigner(), CosignSigner()

    def image(repo: str, seed: str) -> PushedImage:
        return push_multilayer_image(origin, repo, "v1", (96 << 10, 32 << 10), seed=seed, workdir=work)

    signed = image("signed/app", "sig-app")
    trusted.attach(origin, signed.repo, signed.manifest.digest)
    multi = push_multiarch_index(origin, "signed/multi", "v1", (64 << 10,), seed="sig-multi", workdir=work)
    trusted.attach(origin, multi.repo, multi.manifest.digest)
    unsigned = image("signed/unsigned", "sig-unsigned")
    other_key = image("signed/otherkey", "sig-other")
    stranger.attach(origin, other_key.repo, other_key.manifest.digest)
    replayed = image("signed/replayed", "sig-replayed")
    app_payload = simple_signing_payload(f"{origin.host}/{signed.repo}", signed.manifest.digest)
    trusted.attach(
        origin,
        replayed.repo,
        signed.manifest.digest,
        payload=app_payload,
        signature=trusted.sign(app_payload),
        under=replayed.manifest.digest,
    )
    tampered = image("signed/tampered", "sig-tampered")
    honest = simple_signing_payload(f"{origin.host}/{tampered.repo}", tampered.manifest.digest)
    trusted.attach(
        origin,
        tampered.repo,
        tampered.manifest.digest,
        payload=honest.replace(b"signed/tampered", b"signed/tampereD"),
        signature=trusted.sign(honest),
    )
    warned = image("warned/app", "sig-warned")
    return SignedImages(
        signed, multi, unsigned, other_key, replayed, tampered, warned, trusted.write_public_key(work / "cosign.pub")
    )


def policy_config(path: Path, upstream: str, key: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "builtin_upstreams = false\n"
        f'default_upstream = "{upstream}"\n'
        f'[[signatures]]\nname = "{POLICY}"\nupstream = "{upstream}"\nrepositories = ["signed/*"]\n'
        f'public_keys = ["{key}"]\n'
        f'[[signatures]]\nname = "audit"\nupstream = "{upstream}"\nrepositories = ["warned/*"]\n'
        f'public_keys = ["{key}"]\nmode = "warn"\n'
    )
    return path


@pytest.fixture
def policy_mirror(
    origin: OriginRegistry, signed_images: SignedImages, mirror_process: MirrorFactory, tmp_path: Path
) -> MirrorProcess:
    config = policy_config(tmp_path / "policy.toml", origin.host, signed_images.public_key)
    return mirror_process({origin.host: origin.url}, ["--config", str(config)])


def _manifest(
    client: httpx.Client, image: PushedImage | PushedIndex, ref: str | None = None, method: str = "GET"
) -> httpx.Response:
    return client.request(
        method,
        f"/v2/{image.repo}/manifests/{ref or image.tag}",
        params={"ns": image.registry},
        headers={"Accept": ACCEPT},
    )


def _blob(client: httpx.Client, image: PushedImage, digest: str) -> httpx.Response:
    return client.get(f"/v2/{image.repo}/blobs/{digest}", params={"ns": image.registry})


def _access_lines(mirror: MirrorProcess, path_part: str) -> list[dict[str, object]]:
    lines = []
    for line in mirror.log_text().splitlines():
        start = line.find('{"client"')
        if start != -1 and path_part in line:
            lines.append(json.loads(line[start:]))
    return lines


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_signed_images_are_served_and_every_bad_signature_refused(
    policy_mirror: MirrorProcess, signed_images: SignedImages
) -> None:
    images = signed_images
    with policy_mirror.client() as client:
        for method in ("HEAD", "GET"):
            ok = _manifest(client, images.signed, method=method)
            assert ok.status_code == 200 and ok.headers["docker-content-digest"] == images.signed.manifest.digest
        by_digest = _manifest(client, images.signed, images.signed.manifest.digest)
        assert by_digest.status_code == 200
        for blob in images.signed.blobs:
            assert len(_blob(client, images.signed, blob.digest).content) == blob.size

        refusals = {
            images.unsigned: "no signature found",
            images.other_key: "none of its 1 signatures is by a trusted key over this digest",
            images.replayed: "none of its 1 signatures is by a trusted key over this digest",
            images.tampered: "none of its 1 signatures is by a trusted key over this digest",
        }
        for image, reason in refusals.items():
            for ref in (image.tag, image.manifest.digest):
                refused = _manifest(client, image, ref)
                assert refused.status_code == 403, (image.repo, ref, refused.text)
                error = refused.json()["errors"][0]
                assert error["code"] == "DENIED", error
                assert f"signature policy '{POLICY}' refused {image.manifest.digest}: {reason}" == error["message"]
                assert error["detail"]["policy"] == POLICY
            assert _manifest(client, image, method="HEAD").status_code == 403
            # The refused image's blobs are not served under that repository.
            for blob in image.blobs:
                denied = _blob(client, image, blob.digest)
                assert denied.status_code == 403 and blob.size != len(denied.content), (image.repo, blob)
                assert denied.json()["errors"][0]["message"].startswith(f"signature policy '{POLICY}' refused")

        # Signature manifests are not images: cosign clients can read them through the mirror.
        sig = _manifest(client, images.signed, signature_tag(images.signed.manifest.digest))
        assert sig.status_code == 200, sig.text
        # warn: served, logged, counted.
        assert _manifest(client, images.warned).status_code == 200
        assert _blob(client, images.warned, images.warned.layers[0].digest).status_code == 200
        metrics = client.get("/metrics").text

    assert _metric(metrics, "registry_mirror_signature_verdicts_total", policy=POLICY, result="verified") >= 3
    assert _metric(metrics, "registry_mirror_signature_verdicts_total", policy=POLICY, result="refused") >= 8
    assert _metric(metrics, "registry_mirror_signature_verdicts_total", policy="audit", result="warned") == 1
    assert _metric(metrics, "registry_mirror_signature_blob_refusals_total", policy=POLICY) >= 12
    log = policy_mirror.log_text()
    assert f"signature policy 'audit' (warn): {images.warned.manifest.digest}" in log
    verdicts = {line.get("signature") for line in _access_lines(policy_mirror, "/manifests/")}
    assert verdicts == {"verified", "refused", "warned", None}  # None: the signature manifest
    assert {line.get("signature") for line in _access_lines(policy_mirror, "/blobs/")} == {None, "refused"}
    assert all(
        line.get("signature_policy") in (POLICY, "audit") for line in _access_lines(policy_mirror, "/manifests/v1")
    )


def test_a_warm_pull_costs_no_verification_and_no_signature_requests(
    policy_mirror: MirrorProcess, signed_images: SignedImages, origin: OriginRegistry
) -> None:
    image = signed_images.signed
    with policy_mirror.client() as client:
        assert _manifest(client, image, image.manifest.digest).status_code == 200
        before = client.get("/metrics").text
        marker = origin.clear_log_marker()
        for _ in range(5):
            assert _manifest(client, image, image.manifest.digest).status_code == 200
        after = client.get("/metrics").text
    name = "registry_mirror_signature_verifications_total"
    assert _metric(after, name, policy=POLICY) == _metric(before, name, policy=POLICY) == 1
    assert _metric(after, "registry_mirror_signature_verdicts_total", policy=POLICY, cached="true") == 5
    assert [e for e in origin.entries_since(marker) if ".sig" in e.path or "/blobs/" in e.path] == []


def test_children_of_a_signed_index_are_served_through_it(
    policy_mirror: MirrorProcess, signed_images: SignedImages
) -> None:
    multi = signed_images.multi
    child = multi.children[0]
    with policy_mirror.client() as client:
        # Asked for directly, before any index: the child carries no signature of its own.
        assert _manifest(client, multi, child.manifest.digest).status_code == 403
        assert _manifest(client, multi).status_code == 200
        for each in multi.children:
            assert _manifest(client, multi, each.manifest.digest).status_code == 200
            for blob in each.blobs:  # named by a verified manifest now, though refused before
                assert _blob(client, each, blob.digest).status_code == 200


@pytest.fixture
def dead_server() -> str:
    return f"http://127.0.0.1:{free_port()}"  # containerd's fallback after a mirror refuses: nothing


def test_ctr_pulls_signed_images_and_is_refused_the_rest(
    policy_mirror: MirrorProcess, signed_images: SignedImages, containerd: ContainerdDaemon, dead_server: str
) -> None:
    write_hosts_toml(containerd.hosts_dir, signed_images.signed.registry, policy_mirror.url, server_url=dead_server)
    containerd.ctr_pull(signed_images.signed.ref)
    containerd.ctr_pull(signed_images.multi.ref)  # the index verified, its child through it
    assert signed_images.multi.children[0].manifest.digest in containerd.content_digests()
    for image in (signed_images.unsigned, signed_images.replayed):
        refused = containerd.ctr_pull(image.ref, check=False)
        assert not refused.ok, refused.output
    assert image.layers[0].digest not in containerd.content_digests()
    refusals = [line for line in _access_lines(policy_mirror, "signed/unsigned/manifests") if line["status"] == 403]
    assert refusals and all(line["signature"] == "refused" for line in refusals)


def test_skopeo_copies_signed_images_and_is_refused_the_rest(
    policy_mirror: MirrorProcess, signed_images: SignedImages, tmp_path: Path
) -> None:
    src = f"docker://{policy_mirror.host}"  # no ?ns=: the default upstream, the origin
    copied = skopeo(
        ["copy", "--src-tls-verify=false", f"{src}/{signed_images.signed.repo}:v1", f"oci:{tmp_path / 'ok'}:v1"]
    )
    assert copied.returncode == 0
    for image in (signed_images.other_key, signed_images.tampered):
        refused = skopeo(
            ["copy", "--src-tls-verify=false", f"{src}/{image.repo}:v1", f"oci:{tmp_path / 'no'}:v1"], check=False
        )
        assert refused.returncode != 0
        assert f"signature policy '{POLICY}' refused {image.manifest.digest}" in refused.stderr, refused.stderr
