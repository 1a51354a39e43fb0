"""The cosign verifier against real cosign output: containers/image's signature fixtures
(tests/fixtures/containers-image-cosign, see its README for origin and license)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from registry_mirror.signatures._cosign import (
    SIMPLE_SIGNING_MEDIA_TYPE,
    InvalidKey,
    SignedPayload,
    VerifyKey,
    load_public_key,
    payload_digest,
    signature_tag,
    verify,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "containers-image-cosign"


def read_signature(path: Path) -> SignedPayload:
    """containers/image's on-disk signature: 0x00, "sigstore-json\\n", then the layer as JSON."""
    raw = path.read_bytes()
    prefix = b"\x00sigstore-json\n"
    assert raw.startswith(prefix), path
    layer = json.loads(raw[len(prefix) :])
    assert layer["mimeType"] == SIMPLE_SIGNING_MEDIA_TYPE
    return SignedPayload(base64.b64decode(layer["payload"]), layer["annotations"]["dev.cosignproject.cosign/signature"])


def key(name: str) -> VerifyKey:
    return load_public_key((FIXTURES / name).read_bytes())


def manifest_digest(directory: str) -> str:
    return "sha256:" + hashlib.sha256((FIXTURES / directory / "manifest.json").read_bytes()).hexdigest()


VALID = read_signature(FIXTURES / "dir-img-cosign-valid" / "signature-1")
VALID_DIGEST = manifest_digest("dir-img-cosign-valid")


def test_real_cosign_signature_verifies() -> None:
    cosign = key("cosign.pub")
    assert verify(VALID, VALID_DIGEST, [cosign]) == cosign.keyid
    # Any trusted key that signed it counts; the others are simply not the signer.
    assert verify(VALID, VALID_DIGEST, [key("cosign2.pub"), cosign]) == cosign.keyid
    second = read_signature(FIXTURES / "dir-img-cosign-valid-2" / "signature-2")
    assert second.signature != VALID.signature  # a second signature of the same image, same key
    assert verify(second, manifest_digest("dir-img-cosign-valid-2"), [cosign]) == cosign.keyid
    assert payload_digest(VALID.payload) == VALID_DIGEST


def test_wrong_key_modified_manifest_and_keyless_are_refused() -> None:
    assert verify(VALID, VALID_DIGEST, [key("cosign2.pub")]) is None
    assert verify(VALID, VALID_DIGEST, []) is None
    unknown = read_signature(FIXTURES / "unknown-cosign-key.signature")
    assert payload_digest(unknown.payload) == VALID_DIGEST  # same image, signed by another key
    assert verify(unknown, VALID_DIGEST, [key("cosign.pub"), key("cosign2.pub")]) is None
    modified = read_signature(FIXTURES / "dir-img-cosign-modified-manifest" / "signature-1")
    assert verify(modified, manifest_digest("dir-img-cosign-modified-manifest"), [key("cosign.pub")]) is None
    keyless = read_signature(FIXTURES / "dir-img-cosign-fulcio-rekor-valid" / "signature-1")
    assert verify(keyless, manifest_digest("dir-img-cosign-fulcio-rekor-valid"), [key("cosign.pub")]) is None


def _flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_any_changed_payload_byte_is_refused() -> None:
    for index in range(len(VALID.payload)):
        changed = SignedPayload(_flipped(VALID.payload, index), VALID.signature)
        assert verify(changed, VALID_DIGEST, [key("cosign.pub")]) is None, index
    assert verify(SignedPayload(VALID.payload + b" ", VALID.signature), VALID_DIGEST, [key("cosign.pub")]) is None


def test_any_changed_signature_byte_is_refused() -> None:
    raw = base64.b64decode(VALID.signature)
    for index in range(len(raw)):
        changed = SignedPayload(VALID.payload, base64.b64encode(_flipped(raw, index)).decode())
        assert verify(changed, VALID_DIGEST, [key("cosign.pub")]) is None, index
    for bad in ("", "not base64!", VALID.signature[:-4], VALID.signature + "AAAA"):
        assert verify(SignedPayload(VALID.payload, bad), VALID_DIGEST, [key("cosign.pub")]) is None


def test_any_other_digest_is_refused() -> None:
    """A valid signature names one digest: under any other (a replay) it does not count."""
    hex_part = VALID_DIGEST.split(":")[1]
    for index in range(len(hex_part)):
        other = "sha256:" + hex_part[:index] + ("0" if hex_part[index] != "0" else "1") + hex_part[index + 1 :]
        assert verify(VALID, other, [key("cosign.pub")]) is None
    assert verify(VALID, VALID_DIGEST.upper(), [key("cosign.pub")]) is None


def test_payload_must_be_a_cosign_payload() -> None:
    assert payload_digest(b"not json") is None
    assert (
        payload_digest(
            json.dumps(
                {"critical": {"type": "atomic container signature", "image": {"docker-manifest-digest": VALID_DIGEST}}}
            ).encode()
        )
        is None
    )
    assert payload_digest(b"[]") is None


def test_signature_tag_and_key_loading(tmp_path: Path) -> None:
    assert signature_tag(VALID_DIGEST) == f"sha256-{VALID_DIGEST[7:]}.sig"
    assert len(key("cosign.pub").keyid) == 64 and key("cosign.pub").keyid != key("cosign2.pub").keyid
    with pytest.raises(InvalidKey, match="not a PEM public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidKey):
        load_public_key((FIXTURES / "dir-img-cosign-valid" / "manifest.json").read_bytes())


def test_the_test_signer_writes_cosigns_payload_byte_for_byte() -> None:
    """tests/support/cosign_signer.py is what the end-to-end tests sign with: same bytes as cosign."""
    from tests.support.cosign_signer import CosignSigner, simple_signing_payload

    reference = json.loads(VALID.payload)["critical"]["identity"]["docker-reference"]
    assert simple_signing_payload(reference, VALID_DIGEST) == VALID.payload
    signer = CosignSigner()
    signed = SignedPayload(VALID.payload, signer.sign(VALID.payload))
    test_key = load_public_key(signer.public_pem())
    assert verify(signed, VALID_DIGEST, [test_key]) == test_key.keyid
    assert verify(signed, VALID_DIGEST, [key("cosign.pub")]) is None
