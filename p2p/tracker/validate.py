"""Strict parsing of tracker requests into typed values.

Every check raises `InvalidField` naming the JSON path of the offending value (`blobs.3.digest`),
which the app turns into a 400. Unknown keys are refused too: a typo must not pass silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from p2p.tracker import models
from p2p.tracker.models import BlobState, PeerInfo

_HOST_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")


class InvalidField(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AnnounceRequest:
    peer: PeerInfo
    blobs: tuple[BlobState, ...]


@dataclass(frozen=True)
class WithdrawRequest:
    peer_id: str
    digests: tuple[str, ...]


@dataclass(frozen=True)
class PiecesRequest:
    peer_id: str
    piece_size: int
    size: int | None
    hashes: dict[int, str]


@dataclass(frozen=True)
class LeaseRequest:
    peer_id: str
    ttl: float


@dataclass(frozen=True)
class ReportRequest:
    reporter: str
    peer_id: str
    digest: str
    reason: str
    # The failed piece, when the reporter can show it: its index, the published sha256 it was
    # checked against, and the sha256 of the bytes the accused sent.
    piece: int | None = None
    expected: str | None = None
    received: str | None = None


@dataclass(frozen=True)
class LookupQuery:
    zone: str
    exclude: tuple[str, ...]
    limit: int
    piece: int | None = None  # the asker's next piece: its holders are offered first


def _object(value: Any, field: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(field or "body", "must be a JSON object")
    for key in value:
        if key not in allowed:
            raise InvalidField(_join(field, str(key)), "unknown field")
    for key in sorted(required):
        if key not in value:
            raise InvalidField(_join(field, key), "is required")
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _string(value: Any, field: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidField(field, f"must be {what}")
    return value


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidField(field, f"must be between {low} and {high}")
    return value


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidField(field, "must be a finite number")
    if not low <= value <= high:
        raise InvalidField(field, f"must be between {low:g} and {high:g}")
    return float(value)


def _list(value: Any, field: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidField(field, "must be a list")
    if len(value) > limit:
        raise InvalidField(field, f"must have at most {limit} entries")
    return value


def digest(value: Any, field: str = "digest") -> str:
    return _string(value, field, models.DIGEST_RE, "a digest like sha256:<64 lowercase hex>")


def peer_id(value: Any, field: str = "peer_id") -> str:
    return _string(value, field, models.PEER_ID_RE, "1-128 characters of [A-Za-z0-9._:-]")


def zone(value: Any, field: str = "zone") -> str:
    return _string(value, field, models.ZONE_RE, "at most 63 characters of [A-Za-z0-9._-]")


def peer_url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > models.MAX_URL_LENGTH:
        raise InvalidField(field, f"must be a URL of at most {models.MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidField(field, "must not contain whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidField(field, "scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidField(field, "must not carry credentials")
    if parts.query or parts.fragment:
        raise InvalidField(field, "must not have a query or fragment")
    host = parts.hostname
    if not host or not _HOST_RE.fullmatch(parts.netloc.rsplit("@", 1)[-1]):
        raise InvalidField(field, "must name a host")
    try:
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise InvalidField(field, "has an invalid port") from exc
    return value.rstrip("/")


def peer(value: Any, field: str = "peer") -> PeerInfo:
    data = _object(value, field, {"id", "url", "zone", "load"}, {"id", "url"})
    return PeerInfo(
        id=peer_id(data["id"], _join(field, "id")),
        url=peer_url(data["url"], _join(field, "url")),
        zone=zone(data.get("zone", ""), _join(field, "zone")),
        load=_number(data.get("load", 0.0), _join(field, "load"), 0.0, models.MAX_LOAD),
    )


def _piece_size(value: Any, field: str) -> int:
    return _integer(value, field, models.MIN_PIECE_SIZE, models.MAX_PIECE_SIZE)


def _blob_size(value: Any, field: str, piece_size: int) -> int:
    return _integer(value, field, 0, piece_size * models.MAX_PIECES)


def _pieces(value: Any, field: str, count: int) -> frozenset[int]:
    if isinstance(value, str):
        try:
            bitmap = models.decode_bitmap(value)
        except ValueError as exc:
            raise InvalidField(field, "bitmap must be base64") from exc
        if len(bitmap) != (count + 7) // 8:
            raise InvalidField(field, f"bitmap must be {(count + 7) // 8} bytes for {count} pieces")
        indices = models.bitmap_indices(bitmap)
        if indices and indices[-1] >= count:
            raise InvalidField(field, "bitmap sets bits past the last piece")
        return frozenset(indices)
    items = _list(value, field, count)
    return frozenset(_integer(item, f"{field}.{n}", 0, count - 1) for n, item in enumerate(items))


def blob(value: Any, field: str) -> BlobState:
    data = _object(value, field, {"digest", "size", "piece_size", "complete", "pieces"}, {"digest", "size"})
    piece_size = _piece_size(data.get("piece_size", models.DEFAULT_PIECE_SIZE), _join(field, "piece_size"))
    size = _blob_size(data["size"], _join(field, "size"), piece_size)
    complete = data.get("complete", False)
    if not isinstance(complete, bool):
        raise InvalidField(_join(field, "complete"), "must be true or false")
    count = models.piece_count(size, piece_size)
    pieces = frozenset() if complete else _pieces(data.get("pieces", []), _join(field, "pieces"), count)
    return BlobState(digest(data["digest"], _join(field, "digest")), size, piece_size, complete, pieces)


def announce(body: Any) -> AnnounceRequest:
    data = _object(body, "", {"peer", "blobs"}, {"peer", "blobs"})
    items = _list(data["blobs"], "blobs", models.MAX_BLOBS_PER_ANNOUNCE)
    return AnnounceRequest(peer(data["peer"]), tuple(blob(item, f"blobs.{n}") for n, item in enumerate(items)))


def withdraw(body: Any) -> WithdrawRequest:
    data = _object(body, "", {"peer_id", "digests"}, {"peer_id", "digests"})
    items = _list(data["digests"], "digests", models.MAX_DIGESTS_PER_WITHDRAW)
    return WithdrawRequest(peer_id(data["peer_id"]), tuple(digest(d, f"digests.{n}") for n, d in enumerate(items)))


def heartbeat(body: Any) -> PeerInfo:
    data = _object(body, "", {"peer"}, {"peer"})
    return peer(data["peer"])


def pieces(body: Any) -> PiecesRequest:
    data = _object(body, "", {"peer_id", "piece_size", "size", "hashes"}, {"peer_id", "piece_size", "hashes"})
    piece_size = _piece_size(data["piece_size"], "piece_size")
    size = None if data.get("size") is None else _blob_size(data["size"], "size", piece_size)
    count = models.MAX_PIECES if size is None else models.piece_count(size, piece_size)
    raw = data["hashes"]
    if not isinstance(raw, dict):
        raise InvalidField("hashes", "must be an object of piece index -> piece hash")
    if len(raw) > count:
        raise InvalidField("hashes", f"must have at most {count} entries")
    hashes: dict[int, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.isdecimal() or len(key) > 6:
            raise InvalidField(f"hashes.{key}", "key must be a piece index")
        index = _integer(int(key), f"hashes.{key}", 0, count - 1)
        hashes[index] = _string(value, f"hashes.{key}", models.PIECE_HASH_RE, "blake3:<64 lowercase hex digits>")
    return PiecesRequest(peer_id(data["peer_id"]), piece_size, size, hashes)


def lease(body: Any, max_ttl: float) -> LeaseRequest:
    data = _object(body, "", {"peer_id", "ttl"}, {"peer_id"})
    ttl = _number(data.get("ttl", max_ttl), "ttl", 0.1, max_ttl)
    return LeaseRequest(peer_id(data["peer_id"]), ttl)


def release(body: Any) -> str:
    data = _object(body, "", {"peer_id"}, {"peer_id"})
    return peer_id(data["peer_id"])


def report(body: Any) -> ReportRequest:
    allowed = {"reporter", "peer_id", "digest", "reason", "piece", "expected", "received"}
    data = _object(body, "", allowed, {"reporter", "peer_id", "digest"})
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > models.MAX_REASON_LENGTH or not reason.isprintable():
        raise InvalidField("reason", f"must be printable text of at most {models.MAX_REASON_LENGTH} characters")
    reporter = peer_id(data["reporter"], "reporter")
    accused = peer_id(data["peer_id"])
    if reporter == accused:
        raise InvalidField("peer_id", "a peer cannot report itself")
    evidence = [key for key in ("piece", "expected", "received") if key in data]
    if evidence and len(evidence) != 3:
        missing = sorted({"piece", "expected", "received"} - set(evidence))[0]
        raise InvalidField(missing, "piece, expected and received go together")
    if not evidence:
        return ReportRequest(reporter, accused, digest(data["digest"]), reason)
    return ReportRequest(
        reporter,
        accused,
        digest(data["digest"]),
        reason,
        piece=_integer(data["piece"], "piece", 0, models.MAX_PIECES - 1),
        expected=_string(data["expected"], "expected", models.PIECE_HASH_RE, "a piece hash, blake3:<64 lowercase hex>"),
        received=_string(data["received"], "received", models.PIECE_HASH_RE, "a piece hash, blake3:<64 lowercase hex>"),
    )


def lookup(params: Mapping[str, str], excludes: list[str]) -> LookupQuery:
    for key in params:
        if key not in ("zone", "exclude", "limit", "piece"):
            raise InvalidField(key, "unknown query parameter")
    if len(excludes) > models.MAX_EXCLUDES:
        raise InvalidField("exclude", f"must be given at most {models.MAX_EXCLUDES} times")
    limit_text = params.get("limit", "20")
    if not limit_text.isdecimal() or len(limit_text) > 4:
        raise InvalidField("limit", "must be an integer")
    piece_text = params.get("piece")
    if piece_text is not None and (not piece_text.isdecimal() or len(piece_text) > 6):
        raise InvalidField("piece", "must be a piece index")
    return LookupQuery(
        zone=zone(params.get("zone", "")),
        exclude=tuple(peer_id(e, "exclude") for e in excludes),
        limit=_integer(int(limit_text), "limit", 1, models.MAX_LOOKUP_LIMIT),
        piece=None if piece_text is None else _integer(int(piece_text), "piece", 0, models.MAX_PIECES - 1),
    )


MAX_CATALOG_DIGESTS = 100_000
_CATALOG_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class CatalogOffer:
    peer_id: str
    digests: tuple[str, ...]


def catalog_name(value: Any, field: str = "name") -> str:
    return _string(value, field, _CATALOG_NAME_RE, "1-128 characters of [A-Za-z0-9._-]")


def serial(value: Any, field: str = "serial") -> int:
    if isinstance(value, str):
        if not value.isdecimal() or len(value) > 18:
            raise InvalidField(field, "must be a non-negative integer")
        value = int(value)
    return _integer(value, field, 0, 10**18)


def _digests(value: Any, field: str) -> tuple[str, ...]:
    items = _list(value, field, MAX_CATALOG_DIGESTS)
    return tuple(dict.fromkeys(digest(item, f"{field}.{i}") for i, item in enumerate(items)))


def catalog_offer(body: Any) -> CatalogOffer:
    doc = _object(body, "", {"peer_id", "digests"}, {"peer_id", "digests"})
    return CatalogOffer(peer_id(doc["peer_id"]), _digests(doc["digests"], "digests"))


def readiness_digests(body: Any) -> tuple[str, ...]:
    doc = _object(body, "", {"digests"}, {"digests"})
    return _digests(doc["digests"], "digests")
