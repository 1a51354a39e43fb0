"""Wire types shared by the tracker and its client, with the limits both sides enforce.

A piece bitmap is MSB-first (bit i is `byte[i // 8] >> (7 - i % 8) & 1`, as in BitTorrent and Redis
SETBIT), sent as base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oci import DIGEST_RE as DIGEST_RE  # re-exported for p2p.tracker.validate

PEER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
ZONE_RE = re.compile(r"^[A-Za-z0-9._-]{0,63}$")
# A piece hash names its algorithm as an OCI digest does ("blake3:<hex>"); bare hex is the sha256
# that seeds before blake3 published.
PIECE_HASH_RE = re.compile(r"^(?:blake3:)?[0-9a-f]{64}$")

KiB = 1024
MiB = 1024 * KiB
DEFAULT_PIECE_SIZE = 4 * MiB
MIN_PIECE_SIZE = 64 * KiB
MAX_PIECE_SIZE = 1024 * MiB
MAX_PIECES = 65536  # 256 GiB at the default piece size
MAX_BLOBS_PER_ANNOUNCE = 1024
MAX_DIGESTS_PER_WITHDRAW = 1024
MAX_EXCLUDES = 32
MAX_LOOKUP_LIMIT = 100
MAX_URL_LENGTH = 512
MAX_REASON_LENGTH = 256
MAX_LOAD = 1e6


def piece_count(size: int, piece_size: int) -> int:
    return -(-size // piece_size)


def bitmap_from_indices(indices: Iterable[int], count: int) -> bytes:
    bits = bytearray((count + 7) // 8)
    for index in indices:
        if not 0 <= index < count:
            raise ValueError(f"piece index {index} outside 0..{count - 1}")
        bits[index // 8] |= 0x80 >> (index % 8)
    return bytes(bits)


def full_bitmap(count: int) -> bytes:
    return bitmap_from_indices(range(count), count)


def bitmap_has(bitmap: bytes, index: int) -> bool:
    byte = index // 8
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (index % 8)))


def bitmap_indices(bitmap: bytes) -> list[int]:
    return [i for i in range(len(bitmap) * 8) if bitmap_has(bitmap, i)]


def bitmap_count(bitmap: bytes) -> int:
    return sum(byte.bit_count() for byte in bitmap)


def encode_bitmap(bitmap: bytes) -> str:
    return base64.b64encode(bitmap).decode("ascii")


def decode_bitmap(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not valid base64") from exc


@dataclass(frozen=True)
class PeerInfo:
    id: str
    url: str  # where the peer serves blobs: http(s)://host:port[/prefix]
    zone: str = ""
    load: float = 0.0  # lower is better; the peer decides the scale (e.g. active uploads)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "zone": self.zone, "load": self.load}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PeerInfo:
        return cls(str(data["id"]), str(data["url"]), str(data.get("zone", "")), float(data.get("load", 0.0)))


@dataclass(frozen=True)
class BlobState:
    """What one peer holds of one blob: all of it, or the verified pieces of a fill in progress."""

    digest: str
    size: int
    piece_size: int = DEFAULT_PIECE_SIZE
    complete: bool = False
    pieces: frozenset[int] = frozenset()

    @property
    def piece_count(self) -> int:
        return piece_count(self.size, self.piece_size)

    def bitmap(self) -> bytes:
        if self.complete:
            return full_bitmap(self.piece_count)
        return bitmap_from_indices(self.pieces, self.piece_count)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "digest": self.digest,
            "size": self.size,
            "piece_size": self.piece_size,
            "complete": self.complete,
        }
        if not self.complete:
            wire["pieces"] = encode_bitmap(self.bitmap())
        return wire


@dataclass(frozen=True)
class PeerHolding:
    """A lookup answer: a peer and the pieces of the blob it can serve."""

    peer: PeerInfo
    size: int
    piece_size: int
    complete: bool
    bitmap: bytes

    @property
    def piece_count(self) -> int:
        return piece_count(self.size, self.piece_size)

    @property
    def pieces_held(self) -> int:
        return self.piece_count if self.complete else bitmap_count(self.bitmap)

    def has(self, index: int) -> bool:
        return self.complete or bitmap_has(self.bitmap, index)

    def to_wire(self) -> dict[str, Any]:
        return {
            "peer": self.peer.to_wire(),
            "size": self.size,
            "piece_size": self.piece_size,
            "piece_count": self.piece_count,
            "complete": self.complete,
            "pieces_held": self.pieces_held,
            "pieces": encode_bitmap(full_bitmap(self.piece_count) if self.complete else self.bitmap),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PeerHolding:
        return cls(
            peer=PeerInfo.from_wire(data["peer"]),
            size=int(data["size"]),
            piece_size=int(data["piece_size"]),
            complete=bool(data["complete"]),
            bitmap=decode_bitmap(str(data["pieces"])),
        )


@dataclass(frozen=True)
class PieceHashes:
    """The seed's hash of each piece (p2p.pieces.piece_digest); `size` is None until the seed has seen
    the whole blob."""

    digest: str
    piece_size: int
    size: int | None = None
    hashes: Mapping[int, str] = field(default_factory=dict)

    @property
    def piece_count(self) -> int | None:
        return None if self.size is None else piece_count(self.size, self.piece_size)

    @property
    def complete(self) -> bool:
        count = self.piece_count
        return count is not None and all(i in self.hashes for i in range(count))

    def to_wire(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "piece_size": self.piece_size,
            "size": self.size,
            "piece_count": self.piece_count,
            "complete": self.complete,
            "hashes": {str(i): h for i, h in sorted(self.hashes.items())},
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PieceHashes:
        size = data.get("size")
        return cls(
            digest=str(data["digest"]),
            piece_size=int(data["piece_size"]),
            size=None if size is None else int(size),
            hashes={int(i): str(h) for i, h in dict(data["hashes"]).items()},
        )


@dataclass(frozen=True)
class Lease:
    """The answer to a seed lease request: granted to the asker, or held by `holder_id`."""

    granted: bool
    holder_id: str
    ttl: float  # seconds left on the lease
    holder: PeerInfo | None = None  # the holder's registration, when the tracker knows it

    def to_wire(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "holder_id": self.holder_id,
            "ttl": self.ttl,
            "holder": None if self.holder is None else self.holder.to_wire(),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Lease:
        holder = data.get("holder")
        return cls(
            granted=bool(data["granted"]),
            holder_id=str(data["holder_id"]),
            ttl=float(data["ttl"]),
            holder=None if holder is None else PeerInfo.from_wire(holder),
        )
