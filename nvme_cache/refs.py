"""Durable names for cached content: tag -> digest, revision -> commit, a commit's listings.

They live in the cache index's SQLite file (its own table), so they survive a restart together
with the bytes they name, and the mirror can answer for what it holds while the origin is down.
A ref is (scope, name, variant) -> (value, meta, confirmed): `scope` says whose it is ("tag",
"hf", ...), `variant` tells apart answers for one name (a tag's manifest media types), `confirmed`
is the wall-clock time the origin last vouched for it. Rows are read on demand (callers keep an
LRU in front), so a large table costs disk, not memory.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS refs (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    variant TEXT NOT NULL,
    value BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '',
    confirmed REAL NOT NULL,
    PRIMARY KEY (scope, name, variant)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Ref:
    variant: str
    value: bytes
    meta: str  # free text the owner interprets (JSON headers, a media type)
    confirmed: float  # wall-clock seconds


class Refs:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    def get(self, scope: str, name: str, variant: str = "") -> Ref | None:
        row = self._db.execute(
            "SELECT variant, value, meta, confirmed FROM refs WHERE scope = ? AND name = ? AND variant = ?",
            (scope, name, variant),
        ).fetchone()
        return None if row is None else Ref(row[0], bytes(row[1]), row[2], row[3])

    def variants(self, scope: str, name: str) -> list[Ref]:
        """Every variant of `name`, most recently confirmed first."""
        rows = self._db.execute(
            "SELECT variant, value, meta, confirmed FROM refs WHERE scope = ? AND name = ? ORDER BY confirmed DESC",
            (scope, name),
        )
        return [Ref(v, bytes(value), meta, confirmed) for v, value, meta, confirmed in rows]

    def put(self, scope: str, name: str, value: bytes, *, confirmed: float, variant: str = "", meta: str = "") -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO refs (scope, name, variant, value, meta, confirmed) VALUES (?, ?, ?, ?, ?, ?)",
            (scope, name, variant, value, meta, confirmed),
        )

    def delete(self, scope: str, name: str, variant: str | None = None) -> None:
        if variant is None:
            self._db.execute("DELETE FROM refs WHERE scope = ? AND name = ?", (scope, name))
        else:
            self._db.execute("DELETE FROM refs WHERE scope = ? AND name = ? AND variant = ?", (scope, name, variant))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM refs").fetchone()[0])
