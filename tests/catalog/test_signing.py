from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog.errors import CatalogError, SignatureError, TooLargeError
from catalog.signing import (
    MAX_ENVELOPE_BYTES,
    PAYLOAD_TYPE,
    envelope_to_json,
    generate_keypair,
    keyid,
    load_private_key,
    load_public_key,
    pae,
    save_private_key,
    save_public_key,
    sign,
    verify,
)

PAYLOAD = b'{"hello":"catalog"}'


def independent_pae(payload_type: str, payload: bytes) -> bytes:
    # Written from the DSSE spec text, not from catalog.signing:
    # PAE(type, body) = "DSSEv1" + SP + LEN(type) + SP + type + SP + LEN(body) + SP + body
    # with LEN as ASCII decimal byte counts and SP a single space.
    t = payload_type.encode()
    return b" ".join([b"DSSEv1", str(len(t)).encode(), t, str(len(payload)).encode(), payload])


def test_pae_matches_spec_and_example() -> None:
    # The example from the DSSE protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    for kind, body in [("", b""), ("a b", b"\x00\xff x"), (PAYLOAD_TYPE, PAYLOAD * 100), ("\u00e9", b"1")]:
        assert pae(kind, body) == independent_pae(kind, body)


def test_sign_verify_round_trip_and_signature_over_pae() -> None:
    key = generate_keypair()
    envelope = sign(PAYLOAD, key)
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert verify(envelope_to_json(envelope), [key.public_key()]) == PAYLOAD
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    key.public_key().verify(sig, independent_pae(PAYLOAD_TYPE, PAYLOAD))  # raises if not over PAE


def test_keyid_is_sha256_of_raw_public_key() -> None:
    import hashlib

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    raw = key.public_key().public_bytes_raw()
    assert keyid(key.public_key()) == hashlib.sha256(raw).hexdigest()


def test_pem_round_trip(tmp_path: Path) -> None:
    key = generate_keypair()
    save_private_key(key, tmp_path / "k.pem")
    save_public_key(key.public_key(), tmp_path / "k.pub")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    envelope = envelope_to_json(sign(PAYLOAD, load_private_key(tmp_path / "k.pem")))
    assert verify(envelope, [load_public_key(tmp_path / "k.pub")]) == PAYLOAD
    with pytest.raises(SignatureError):
        load_private_key(_rsa_pem(tmp_path))


def _rsa_pem(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


KEY = generate_keypair()
OTHER = generate_keypair()


def tampered(change: Callable[[dict[str, Any]], Any]) -> bytes:
    envelope = sign(PAYLOAD, KEY)
    result = change(envelope)
    return result if isinstance(result, bytes) else envelope_to_json(envelope)


def _flip_sig(e: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(e["signatures"][0]["sig"]))
    sig[0] ^= 1
    e["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


CASES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "payload changed": lambda e: e.update(payload=base64.b64encode(b'{"hello":"catalOg"}').decode()),
    "sig changed": _flip_sig,
    "signed by other key": lambda e: e.update(signatures=sign(PAYLOAD, OTHER)["signatures"]),
    "unknown keyid": lambda e: e["signatures"][0].update(keyid="0" * 64),
    "extra untrusted signature": lambda e: e["signatures"].append(sign(PAYLOAD, OTHER)["signatures"][0]),
    "unsigned": lambda e: e.update(signatures=[]),
    "signatures missing": lambda e: e.pop("signatures"),
    "payloadType wrong": lambda e: e.update(payloadType="application/json"),
    "payloadType missing": lambda e: e.pop("payloadType"),
    "extra field": lambda e: e.update(extra=1),
    "extra signature field": lambda e: e["signatures"][0].update(cert="x"),
    "bad base64 payload": lambda e: e.update(payload="!!!" + e["payload"]),
    "bad base64 sig": lambda e: e["signatures"][0].update(sig="a"),
    "sig not a string": lambda e: e["signatures"][0].update(sig=5),
    "truncated": lambda e: envelope_to_json(e)[:-7],
    "not json": lambda e: b"\xff\xfe",
    "json array": lambda e: b"[]",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_envelopes_rejected(case: str) -> None:
    with pytest.raises(SignatureError):
        verify(tampered(CASES[case]), [KEY.public_key()])


def test_wrong_trusted_key_rejected() -> None:
    with pytest.raises(SignatureError):
        verify(envelope_to_json(sign(PAYLOAD, KEY)), [OTHER.public_key()])
    with pytest.raises(SignatureError):
        verify(envelope_to_json(sign(PAYLOAD, KEY)), [])


def test_oversized_envelope_rejected_before_parsing() -> None:
    with pytest.raises(TooLargeError):
        verify(b"{" * (MAX_ENVELOPE_BYTES + 1), [KEY.public_key()])


def test_payload_is_not_parsed_before_signature_check() -> None:
    # A payload that is not JSON at all still verifies: verify() never looks inside it.
    assert verify(envelope_to_json(sign(b"\x00not json", KEY)), [KEY.public_key()]) == b"\x00not json"


def test_errors_are_catalog_errors() -> None:
    assert issubclass(SignatureError, CatalogError) and issubclass(TooLargeError, CatalogError)


def test_interop_with_securesystemslib() -> None:
    dsse = pytest.importorskip("securesystemslib.dsse")
    from securesystemslib.signer import CryptoSigner, SSlibKey

    envelope = sign(PAYLOAD, KEY)
    public = SSlibKey.from_crypto(KEY.public_key(), keyid=keyid(KEY.public_key()))
    theirs = dsse.Envelope.from_dict(json.loads(envelope_to_json(envelope)))
    assert theirs.pae() == pae(PAYLOAD_TYPE, PAYLOAD)
    assert set(theirs.verify([public], 1)) == {keyid(KEY.public_key())}
    # ...and the other way round: their signature verifies with ours.
    signer = CryptoSigner(OTHER, public_key=SSlibKey.from_crypto(OTHER.public_key(), keyid=keyid(OTHER.public_key())))
    made = dsse.Envelope(payload=PAYLOAD, payload_type=PAYLOAD_TYPE, signatures={})
    made.sign(signer)
    assert verify(json.dumps(made.to_dict()).encode(), [OTHER.public_key()]) == PAYLOAD
