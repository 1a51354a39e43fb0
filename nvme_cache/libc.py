"""The C library of this process, for the few calls Python's `os` lacks (prctl, fstatfs).

None off Linux: callers then go without (threads keep Python's names, every write is buffered).
"""

from __future__ import annotations

import ctypes
import sys


def _load() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


LIBC = _load()
