"""Fixed-size pieces: their bounds, and the seed's per-piece sha256 computed as bytes stream past."""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def piece_count(size: int, piece_size: int) -> int:
    return max(1, -(-size // piece_size)) if size else 0


def piece_bounds(index: int, size: int, piece_size: int) -> tuple[int, int]:
    start = index * piece_size
    return start, min(start + piece_size, size)


def pieces_within(written: int, size: int, piece_size: int) -> int:
    """How many leading pieces are wholly inside the first `written` bytes."""
    if written >= size:
        return piece_count(size, piece_size)
    return written // piece_size


class PieceHasher:
    """Runs on the fill's worker thread: hashes each piece and reports it through `on_piece`.

    Chunks arrive in order; `start` is where hashing begins (a takeover seed starts mid-blob,
    on a piece boundary).
    """

    def __init__(self, size: int, piece_size: int, start: int, on_piece: Callable[[int, str], None]) -> None:
        self._size = size
        self._piece_size = piece_size
        self._on_piece = on_piece
        self._offset = start
        self._hasher = hashlib.sha256()

    def __call__(self, offset: int, chunk: bytes) -> None:
        end = offset + len(chunk)
        if end <= self._offset:
            return
        view = memoryview(chunk)[max(0, self._offset - offset) :]
        while view:
            index = self._offset // self._piece_size
            piece_end = min((index + 1) * self._piece_size, self._size)
            take = min(len(view), piece_end - self._offset)
            self._hasher.update(view[:take])
            self._offset += take
            view = view[take:]
            if self._offset == piece_end:
                self._on_piece(index, self._hasher.hexdigest())
                self._hasher = hashlib.sha256()
