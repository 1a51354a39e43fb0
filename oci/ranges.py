"""HTTP byte ranges (RFC 9110 section 14): the `Range` a client asks for and the `Content-Range`
a server answers with. Both the mirror's own API and the peer listener parse Range here; both
the origin and the peer clients read Content-Range here."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE_SPEC = re.compile(r"([0-9]{0,32})-([0-9]{0,32})")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,32})-([0-9]{1,32})/([0-9]{1,32}|\*)")


class UnsatisfiableRange(ValueError):
    """A Range no byte of a blob of `size` bytes satisfies (HTTP 416, `Content-Range: bytes */size`)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for {size} bytes")
        self.size = size


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int | None  # inclusive; None: to the end of a blob whose size is not known yet

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start + 1

    def content_range(self, size: int | None) -> str:
        if self.end is None:
            raise ValueError("an open range has no Content-Range until the size is known")
        return f"bytes {self.start}-{self.end}/{'*' if size is None else size}"

    def resolve(self, size: int) -> ByteRange:
        """This range against a now-known size: clamped, or UnsatisfiableRange."""
        return _satisfy(self.start, self.end, size)


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """The single byte range a GET should serve, or None to serve the whole blob (200).

    - `bytes=a-b`, `bytes=a-`, `bytes=-n`; the unit is case-insensitive, spaces around are fine.
    - Malformed, another unit, or several ranges: None. RFC 9110 lets a server ignore Range,
      and a multipart/byteranges body is not worth it for a registry (containerd sends `N-`).
    - A suffix (`-n`) while the size is unknown: None, the whole blob.
    - Unsatisfiable against a known size: UnsatisfiableRange.
    """
    if header is None:
        return None
    unit, sep, range_set = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in range_set:
        return None
    match = _RANGE_SPEC.fullmatch(range_set.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None  # "bytes=-"
        return _suffix(int(last), size)
    start, end = int(first), (int(last) if last else None)
    if end is not None and end < start:
        return None  # invalid range-spec: ignore the header
    if size is None:
        return ByteRange(start, end)
    return _satisfy(start, end, size)


def _suffix(length: int, size: int | None) -> ByteRange | None:
    if size is None:
        return None
    if length == 0:
        raise UnsatisfiableRange(size)
    if size == 0:
        # RFC 9110 14.1.1: the one satisfiable form for an empty representation, but no
        # Content-Range can name an empty range: serve the whole (empty) blob as a 200.
        return None
    return ByteRange(max(0, size - length), size - 1)


def _satisfy(start: int, end: int | None, size: int) -> ByteRange:
    if start >= size:
        raise UnsatisfiableRange(size)
    last = size - 1 if end is None else min(end, size - 1)
    return ByteRange(start, last)


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int  # inclusive
    size: int | None  # None: `*`, the sender does not know it yet

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(header: str | None) -> ContentRange | None:
    """A 206's `bytes first-last/size` (size may be `*`), or None when it is anything else,
    including a range that is backwards or reaches past the size it names."""
    match = _CONTENT_RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    size = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (size is not None and end >= size):
        return None
    return ContentRange(start, end, size)
