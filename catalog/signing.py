"""DSSE envelopes signed with Ed25519 (https://github.com/secure-systems-lab/dsse).

`verify` checks the signature over the raw payload bytes before anything parses the payload;
only the envelope itself (a few fixed string fields) is parsed first, strictly and size-capped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from catalog.errors import CatalogError, SignatureError
from catalog.metrics import verifications
from catalog.models import CATALOG_MEDIA_TYPE
from catalog.strict_json import MAX_DOCUMENT_BYTES, load_object

PAYLOAD_TYPE = CATALOG_MEDIA_TYPE
# base64 inflates by 4/3; the envelope cap leaves room for a payload at the catalog cap.
MAX_ENVELOPE_BYTES = MAX_DOCUMENT_BYTES * 4 // 3 + 64 * 1024


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def generate_keypair() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def keyid(public_key: Ed25519PublicKey) -> str:
    """Hex sha256 of the 32 raw public key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Created 0600 from the start so the key is never briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def save_public_key(key: Ed25519PublicKey, path: Path) -> None:
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path}: not an Ed25519 public key")
    return key


def sign(payload: bytes, private_key: Ed25519PrivateKey, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    """Return a DSSE envelope (as a dict) carrying one signature over PAE(payload_type, payload)."""
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": keyid(private_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}],
    }


def envelope_to_json(envelope: Mapping[str, Any]) -> bytes:
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode("utf-8")


def verify(
    envelope_bytes: bytes,
    trusted_public_keys: Iterable[Ed25519PublicKey],
    payload_type: str = PAYLOAD_TYPE,
) -> bytes:
    """Return the payload bytes if every signature is by a trusted key and verifies; else SignatureError."""
    try:
        payload = _verify(envelope_bytes, trusted_public_keys, payload_type)
    except CatalogError as exc:
        verifications.add(1, {"result": type(exc).__name__})
        raise
    verifications.add(1, {"result": "ok"})
    return payload


def _verify(
    envelope_bytes: bytes,
    trusted_public_keys: Iterable[Ed25519PublicKey],
    payload_type: str = PAYLOAD_TYPE,
) -> bytes:
    """Every signature entry must name a trusted keyid and verify: an envelope carrying an entry
    we cannot check is refused rather than silently partly trusted.
    """
    trusted = {keyid(k): k for k in trusted_public_keys}
    if not trusted:
        raise SignatureError("no trusted public keys given")
    envelope = load_object(envelope_bytes, SignatureError, "envelope", MAX_ENVELOPE_BYTES)
    _exact_keys(envelope, "envelope", {"payloadType", "payload", "signatures"})
    if envelope["payloadType"] != payload_type:
        raise SignatureError(f"envelope.payloadType: expected {payload_type!r}")
    payload = _b64(envelope["payload"], "envelope.payload")
    entries = envelope["signatures"]
    if not isinstance(entries, list) or not entries:
        raise SignatureError("envelope.signatures: must be a non-empty list")
    message = pae(payload_type, payload)
    for i, entry in enumerate(entries):
        where = f"envelope.signatures[{i}]"
        if not isinstance(entry, dict):
            raise SignatureError(f"{where}: must be an object")
        _exact_keys(entry, where, {"keyid", "sig"})
        key = trusted.get(entry["keyid"]) if isinstance(entry["keyid"], str) else None
        if key is None:
            raise SignatureError(f"{where}.keyid: not a trusted key")
        try:
            key.verify(_b64(entry["sig"], f"{where}.sig"), message)
        except InvalidSignature:
            raise SignatureError(f"{where}.sig: signature does not verify") from None
    return payload


def _exact_keys(obj: dict[str, Any], where: str, expected: set[str]) -> None:
    missing = expected - set(obj)
    extra = set(obj) - expected
    if missing:
        raise SignatureError(f"{where}.{sorted(missing)[0]}: missing")
    if extra:
        raise SignatureError(f"{where}.{sorted(extra)[0]}: unknown field")


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError(f"{where}: must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{where}: invalid base64") from None
