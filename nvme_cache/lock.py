"""One process owns a cache directory at a time: an `fcntl` lock on `root/lock`, held while
the store is open, with the owner's details (pid, admin URL) written inside so that a second
process (`cache verify`, a second mirror) can say who holds it, or ask the holder to do the work.
The kernel drops the lock when the process dies, kill -9 included.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nvme_cache.errors import CacheError


class CacheInUse(CacheError):
    def __init__(self, root: Path, holder: Mapping[str, Any]) -> None:
        pid = holder.get("pid", "?")
        super().__init__(f"cache dir {root} is in use by another process (pid {pid})")
        self.root = root
        self.holder = dict(holder)


class CacheLock:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "lock"
        self._fd: int | None = None

    def acquire(self, holder: Mapping[str, Any] | None = None) -> None:
        """Take the lock or raise CacheInUse naming its holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CacheInUse(self.root, self.holder() or {}) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), **(holder or {})}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def holder(self) -> dict[str, Any] | None:
        """The holder's details while another process holds the lock, else None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    details = json.loads(os.pread(fd, 64 * 1024, 0) or b"{}")
                except ValueError:
                    details = {}
                return details if isinstance(details, dict) else {}
            return None  # nobody holds it (our shared lock goes with the fd)
        finally:
            os.close(fd)
