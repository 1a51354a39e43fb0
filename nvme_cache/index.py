"""The blob index: sizes, LRU order, named pins and refs (nvme_cache.refs), persisted in SQLite (WAL).

Why SQLite in WAL mode: a hit only moves an in-memory LRU entry and marks it dirty; dirty access
times are written in one batched transaction every few seconds, so a hit never rewrites the index
(distribution's proxy rewrote a whole JSON file every 5 s). Adds, removals and pins are single-row
transactions that survive a crash; the directory scan on start repairs anything the index missed.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nvme_cache.refs import Refs

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    media_type TEXT,
    last_access REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (name, digest)
) WITHOUT ROWID;
"""


@dataclass
class Entry:
    size: int
    media_type: str | None
    last_access: float


class BlobIndex:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.refs = Refs(self._db)  # durable tag/revision resolution in the same file
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # least recently used first
        self._dirty: set[str] = set()
        self._pins: dict[str, set[str]] = {}
        self.bytes_used = 0

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        self._entries.clear()
        self.bytes_used = 0
        rows = self._db.execute("SELECT digest, size, media_type, last_access FROM blobs ORDER BY last_access")
        for digest, size, media_type, last_access in rows:
            self._entries[digest] = Entry(size, media_type, last_access)
            self.bytes_used += size
        self._pins = {}
        for name, digest in self._db.execute("SELECT name, digest FROM pins"):
            self._pins.setdefault(name, set()).add(digest)

    def reconcile(self, on_disk: dict[str, int]) -> tuple[int, int]:
        """Make the index match the files found on disk; returns (added, dropped)."""
        missing = [d for d in self._entries if d not in on_disk]
        wrong_size = [d for d, e in self._entries.items() if d in on_disk and on_disk[d] != e.size]
        self._drop_rows(missing + wrong_size)
        now = time.time()
        new = [(d, size) for d, size in on_disk.items() if d not in self._entries]
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO blobs (digest, size, media_type, last_access) VALUES (?, ?, NULL, ?)",
                [(d, size, now) for d, size in new],
            )
        for digest, size in new:
            self._insert_memory(digest, Entry(size, None, now))
        return len(new), len(missing) + len(wrong_size)

    # -- queries -------------------------------------------------------------------------------
    def get(self, digest: str) -> Entry | None:
        return self._entries.get(digest)

    def __contains__(self, digest: object) -> bool:
        return digest in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def lru(self) -> Iterator[tuple[str, Entry]]:
        """Entries from least to most recently used."""
        return iter(list(self._entries.items()))

    def pinned(self) -> set[str]:
        return set().union(*self._pins.values()) if self._pins else set()

    def pins(self) -> dict[str, set[str]]:
        return {name: set(digests) for name, digests in self._pins.items()}

    # -- updates -------------------------------------------------------------------------------
    def add(self, digest: str, size: int, media_type: str | None) -> None:
        now = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO blobs (digest, size, media_type, last_access) VALUES (?, ?, ?, ?)",
            (digest, size, media_type, now),
        )
        if digest in self._entries:
            self.bytes_used -= self._entries.pop(digest).size
        self._insert_memory(digest, Entry(size, media_type, now))

    def set_media_type(self, digest: str, media_type: str) -> None:
        entry = self._entries.get(digest)
        if entry is not None and entry.media_type != media_type:
            entry.media_type = media_type
            self._db.execute("UPDATE blobs SET media_type = ? WHERE digest = ?", (media_type, digest))

    def remove(self, digests: Iterable[str]) -> None:
        self._drop_rows(list(digests))

    def touch(self, digest: str) -> None:
        entry = self._entries.get(digest)
        if entry is None:
            return
        entry.last_access = time.time()
        self._entries.move_to_end(digest)
        self._dirty.add(digest)

    def flush(self) -> None:
        """Write batched access times in one transaction."""
        if not self._dirty:
            return
        rows = [(self._entries[d].last_access, d) for d in self._dirty if d in self._entries]
        self._dirty.clear()
        with self._transaction():
            self._db.executemany("UPDATE blobs SET last_access = ? WHERE digest = ?", rows)

    def pin(self, name: str, digests: Iterable[str]) -> None:
        """Replace the set of digests pinned under `name`."""
        wanted = set(digests)
        with self._transaction():
            self._db.execute("DELETE FROM pins WHERE name = ?", (name,))
            self._db.executemany("INSERT INTO pins (name, digest) VALUES (?, ?)", [(name, d) for d in wanted])
        self._pins[name] = wanted

    def unpin(self, name: str) -> None:
        self._db.execute("DELETE FROM pins WHERE name = ?", (name,))
        self._pins.pop(name, None)

    def close(self) -> None:
        self.flush()
        self._db.close()

    # -- helpers -------------------------------------------------------------------------------
    def _insert_memory(self, digest: str, entry: Entry) -> None:
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        self.bytes_used += entry.size

    def _drop_rows(self, digests: list[str]) -> None:
        if not digests:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d in digests])
        for digest in digests:
            entry = self._entries.pop(digest, None)
            if entry is not None:
                self.bytes_used -= entry.size
            self._dirty.discard(digest)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
