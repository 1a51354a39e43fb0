"""Catalog schema v1: frozen dataclasses, a strict parser and a canonical serializer.

The parser refuses unknown keys, wrong types and malformed digests, naming the field
(`images[2].digest`), and refuses documents over the size cap before reading them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from catalog.errors import SchemaError
from catalog.strict_json import MAX_DOCUMENT_BYTES, load_object
from oci import DIGEST_RE

SCHEMA_VERSION = 1
CATALOG_MEDIA_TYPE = "application/vnd.registry-mirror.catalog.v1+json"
DELTA_ALGORITHM = "zstd-patch-from"

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
_PLATFORM = re.compile(r"^[a-z0-9_.-]+/[a-z0-9_.-]+(/[a-z0-9_.-]+)?$")

T = TypeVar("T")


@dataclass(frozen=True)
class Image:
    ref: str
    digest: str
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    repository: str


@dataclass(frozen=True)
class Referrer:
    subject: str
    digest: str
    artifact_type: str
    repository: str


@dataclass(frozen=True)
class DeltaBlob:
    digest: str
    size: int


@dataclass(frozen=True)
class Delta:
    from_digest: str
    to_digest: str
    delta: DeltaBlob
    algorithm: str = DELTA_ALGORITHM


@dataclass(frozen=True)
class Catalog:
    name: str
    serial: int
    created: datetime
    expires: datetime
    images: tuple[Image, ...] = ()
    blobs: tuple[Blob, ...] = ()
    referrers: tuple[Referrer, ...] = ()
    deltas: tuple[Delta, ...] = ()
    rollback: bool = False
    # A rollback names the serial it supersedes and still carries a higher serial of its own, so
    # serials only ever grow and no envelope, rollbacks included, can be replayed.
    supersedes: int | None = None


# ---- parsing -------------------------------------------------------------------------


def parse_catalog(data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> Catalog:
    """Parse catalog JSON bytes; raises TooLargeError or SchemaError naming the field."""
    doc = load_object(data, SchemaError, "catalog", max_bytes)
    return catalog_from_dict(doc)


def catalog_from_dict(doc: dict[str, Any]) -> Catalog:
    _only_keys(
        doc,
        "",
        {
            "schemaVersion",
            "mediaType",
            "name",
            "serial",
            "created",
            "expires",
            "images",
            "blobs",
            "referrers",
            "deltas",
            "rollback",
            "supersedes",
        },
    )
    version = _int(doc, "", "schemaVersion")
    if version != SCHEMA_VERSION:
        raise SchemaError("schemaVersion", f"unsupported version {version}, expected {SCHEMA_VERSION}")
    if _str(doc, "", "mediaType") != CATALOG_MEDIA_TYPE:
        raise SchemaError("mediaType", f"must be {CATALOG_MEDIA_TYPE}")
    created = _time(doc, "", "created")
    expires = _time(doc, "", "expires")
    if expires <= created:
        raise SchemaError("expires", "must be later than created")
    blobs = _list(doc, "blobs", _blob, required=True)
    deltas = _list(doc, "deltas", _delta, required=False)
    known = {b.digest for b in blobs}
    for i, d in enumerate(deltas):
        if d.to_digest not in known:
            raise SchemaError(f"deltas[{i}].to", "must name a digest listed in blobs")
    rollback = doc.get("rollback", False)
    if not isinstance(rollback, bool):
        raise SchemaError("rollback", "must be a boolean")
    serial = _nonneg_int(doc, "", "serial")
    supersedes = _nonneg_int(doc, "", "supersedes") if "supersedes" in doc else None
    if rollback and supersedes is None:
        raise SchemaError("supersedes", "a rollback must name the serial it supersedes")
    if supersedes is not None and not rollback:
        raise SchemaError("supersedes", "only a rollback supersedes a serial")
    if supersedes is not None and supersedes >= serial:
        raise SchemaError("supersedes", f"must be lower than serial {serial}: a rollback's own serial grows too")
    return Catalog(
        name=_str(doc, "", "name"),
        serial=serial,
        created=created,
        expires=expires,
        images=_list(doc, "images", _image, required=True),
        blobs=blobs,
        referrers=_list(doc, "referrers", _referrer, required=False),
        deltas=deltas,
        rollback=rollback,
        supersedes=supersedes,
    )


def _image(obj: dict[str, Any], where: str) -> Image:
    _only_keys(obj, where, {"ref", "digest", "platforms"})
    platforms = obj.get("platforms", [])
    if not isinstance(platforms, list) or not all(isinstance(p, str) and _PLATFORM.match(p) for p in platforms):
        raise SchemaError(f"{where}.platforms", "must be a list of os/arch[/variant] strings")
    return Image(ref=_str(obj, where, "ref"), digest=_digest(obj, where, "digest"), platforms=tuple(platforms))


def _blob(obj: dict[str, Any], where: str) -> Blob:
    _only_keys(obj, where, {"digest", "size", "mediaType", "repository"})
    return Blob(
        digest=_digest(obj, where, "digest"),
        size=_nonneg_int(obj, where, "size"),
        media_type=_str(obj, where, "mediaType"),
        repository=_str(obj, where, "repository"),
    )


def _referrer(obj: dict[str, Any], where: str) -> Referrer:
    _only_keys(obj, where, {"subject", "digest", "artifactType", "repository"})
    return Referrer(
        subject=_digest(obj, where, "subject"),
        digest=_digest(obj, where, "digest"),
        artifact_type=_str(obj, where, "artifactType"),
        repository=_str(obj, where, "repository"),
    )


def _delta(obj: dict[str, Any], where: str) -> Delta:
    _only_keys(obj, where, {"from", "to", "delta", "algorithm"})
    algorithm = _str(obj, where, "algorithm")
    if algorithm != DELTA_ALGORITHM:
        raise SchemaError(f"{where}.algorithm", f"unsupported algorithm {algorithm!r}")
    inner = obj.get("delta")
    if not isinstance(inner, dict):
        raise SchemaError(f"{where}.delta", "must be an object")
    _only_keys(inner, f"{where}.delta", {"digest", "size"})
    return Delta(
        from_digest=_digest(obj, where, "from"),
        to_digest=_digest(obj, where, "to"),
        delta=DeltaBlob(_digest(inner, f"{where}.delta", "digest"), _nonneg_int(inner, f"{where}.delta", "size")),
        algorithm=algorithm,
    )


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _only_keys(obj: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SchemaError(_path(where, unknown[0]), "unknown field")


def _required(obj: dict[str, Any], where: str, key: str) -> Any:
    if key not in obj:
        raise SchemaError(_path(where, key), "missing")
    return obj[key]


def _str(obj: dict[str, Any], where: str, key: str) -> str:
    value = _required(obj, where, key)
    if not isinstance(value, str) or not value:
        raise SchemaError(_path(where, key), "must be a non-empty string")
    return value


def _int(obj: dict[str, Any], where: str, key: str) -> int:
    value = _required(obj, where, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(_path(where, key), "must be an integer")
    return value


def _nonneg_int(obj: dict[str, Any], where: str, key: str) -> int:
    value = _int(obj, where, key)
    if value < 0:
        raise SchemaError(_path(where, key), "must not be negative")
    return value


def _digest(obj: dict[str, Any], where: str, key: str) -> str:
    value = _required(obj, where, key)
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise SchemaError(_path(where, key), "must be a sha256:<64 hex> or sha512:<128 hex> digest")
    return value


def _time(obj: dict[str, Any], where: str, key: str) -> datetime:
    value = _required(obj, where, key)
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise SchemaError(_path(where, key), "must be an RFC 3339 UTC timestamp ending in Z")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise SchemaError(_path(where, key), "not a valid date/time") from None


def _list(doc: dict[str, Any], key: str, item: Callable[[dict[str, Any], str], T], required: bool) -> tuple[T, ...]:
    if key not in doc and not required:
        return ()
    value = _required(doc, "", key)
    if not isinstance(value, list):
        raise SchemaError(key, "must be a list")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise SchemaError(f"{key}[{i}]", "must be an object")
        out.append(item(entry, f"{key}[{i}]"))
    return tuple(out)


# ---- serializing ---------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def catalog_to_dict(cat: Catalog) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "mediaType": CATALOG_MEDIA_TYPE,
        "name": cat.name,
        "serial": cat.serial,
        "created": format_time(cat.created),
        "expires": format_time(cat.expires),
        "images": [{"ref": i.ref, "digest": i.digest, "platforms": list(i.platforms)} for i in cat.images],
        "blobs": [
            {"digest": b.digest, "size": b.size, "mediaType": b.media_type, "repository": b.repository}
            for b in cat.blobs
        ],
    }
    if cat.referrers:
        doc["referrers"] = [
            {"subject": r.subject, "digest": r.digest, "artifactType": r.artifact_type, "repository": r.repository}
            for r in cat.referrers
        ]
    if cat.deltas:
        doc["deltas"] = [
            {
                "from": d.from_digest,
                "to": d.to_digest,
                "delta": {"digest": d.delta.digest, "size": d.delta.size},
                "algorithm": d.algorithm,
            }
            for d in cat.deltas
        ]
    if cat.rollback:
        doc["rollback"] = True
    if cat.supersedes is not None:
        doc["supersedes"] = cat.supersedes
    return doc


def catalog_to_json(cat: Catalog) -> bytes:
    """Canonical bytes (sorted keys, no spaces): the exact bytes that get signed."""
    return json.dumps(catalog_to_dict(cat), sort_keys=True, separators=(",", ":")).encode("utf-8")
