"""Writes into a fill's temp file at an offset."""

from __future__ import annotations

import os


def write_at(fd: int, data: memoryview | bytes | bytearray, offset: int) -> None:
    """All of `data` at `offset`: `pwrite` may write less than asked (a signal, a full disk's last
    blocks), and the rest must follow or fail. OSError as it came (ENOSPC: the caller decides)."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
