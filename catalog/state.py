"""The persisted state of one catalog source: the active envelope, the previous one (for rollback)
and the serial an operator rolled back from.

One JSON file per source, replaced atomically (temp file, fsync, rename, fsync of the directory),
so a crash leaves either the old state or the new one. Envelopes are kept as signed bytes and are
verified again when loaded: the file is a cache of what was verified, not a trusted input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from catalog.errors import CatalogError

STATE_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SavedState:
    active: bytes | None = None  # DSSE envelope bytes as pulled and verified
    previous: bytes | None = None
    rolled_back_from: int | None = None  # serials up to this one are refused until a newer one


class StateFile:
    def __init__(self, state_dir: Path, source: str) -> None:
        self.path = Path(state_dir) / state_file_name(source)

    def load(self) -> SavedState:
        """The saved state, or an empty one when there is none; CatalogError when unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return SavedState()
        try:
            doc = json.loads(raw)
            if doc.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {doc.get('version')!r}")
            return SavedState(
                active=_unb64(doc.get("active")),
                previous=_unb64(doc.get("previous")),
                rolled_back_from=_optional_int(doc.get("rolled_back_from")),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise CatalogError(f"{self.path}: unreadable catalog state ({exc})") from None

    def save(self, state: SavedState) -> None:
        doc = {
            "version": STATE_VERSION,
            "active": _b64(state.active),
            "previous": _b64(state.previous),
            "rolled_back_from": state.rolled_back_from,
        }
        write_atomic(self.path, json.dumps(doc, sort_keys=True).encode("utf-8"))


def state_file_name(source: str) -> str:
    # Readable, and unique even when two sources sanitize to the same text.
    short = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', source)[:80]}.{short}.json"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a crash
    finally:
        os.close(directory)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("envelope must be a base64 string")
    return base64.b64decode(value, validate=True)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("rolled_back_from must be an integer")
    return value
