"""Content digests (`sha256:<hex>`) and an incremental verifier (standard library only).

Only the two algorithms the OCI image spec registers are accepted, and only in their canonical
form (lowercase hex of the exact length), so a parsed digest is safe to use as a file name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Protocol

# algorithm -> length of its hex encoding
SUPPORTED_ALGORITHMS: Final[dict[str, int]] = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+")
# The same grammar as one regex, for validators that match many fields by pattern.
DIGEST_RE: Final = re.compile(
    "^(?:" + "|".join(f"{name}:[0-9a-f]{{{length}}}" for name, length in SUPPORTED_ALGORITHMS.items()) + ")$"
)


class InvalidDigest(ValueError):
    """A digest string that is not `sha256:<64 hex>` or `sha512:<128 hex>`."""


class Hasher(Protocol):
    """The part of a `hashlib` object the cache uses."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Digest:
    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        expected_length = SUPPORTED_ALGORITHMS.get(self.algorithm)
        if expected_length is None:
            raise InvalidDigest(f"unsupported digest algorithm {self.algorithm!r}")
        if len(self.hex) != expected_length or not _LOWER_HEX.fullmatch(self.hex):
            raise InvalidDigest(f"{self.algorithm} digest must be {expected_length} lowercase hex characters")

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, hex_part = text.partition(":")
        if not sep:
            raise InvalidDigest(f"digest {text[:80]!r} has no algorithm prefix")
        return cls(algorithm, hex_part)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of a small in-memory document (a manifest); blobs go through `Verifier`."""
        verifier = Verifier(algorithm)
        verifier.update(data)
        return verifier.digest()

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def new_hasher(self) -> Hasher:
        return new_hasher(self.algorithm)


def new_hasher(algorithm: str = "sha256") -> Hasher:
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


class Verifier:
    """Hashes and counts bytes as they stream past, then judges them against an expected digest.

    `update` is synchronous; hashlib releases the GIL on large buffers, so callers on the event
    loop hand ~1 MiB chunks to a thread.
    """

    def __init__(self, algorithm: str = "sha256") -> None:
        self._hasher = new_hasher(algorithm)
        self._algorithm = algorithm
        self._size = 0

    @classmethod
    def for_digest(cls, expected: Digest) -> Verifier:
        return cls(expected.algorithm)

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def size(self) -> int:
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)
        self._size += memoryview(data).nbytes

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    def digest(self) -> Digest:
        return Digest(self._algorithm, self.hexdigest())

    def matches(self, expected: Digest, expected_size: int | None = None) -> bool:
        # Hashing with one algorithm can never confirm a digest of another: that is a caller bug,
        # not a corrupt blob.
        if expected.algorithm != self._algorithm:
            raise ValueError(f"verifier hashes {self._algorithm}, cannot check a {expected.algorithm} digest")
        if expected_size is not None and expected_size != self._size:
            return False
        return self.hexdigest() == expected.hex
