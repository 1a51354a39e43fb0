"""Where bytes live under the cache root, and the start-up scan that reads only directory entries."""

from __future__ import annotations

import os
import re
from pathlib import Path

from oci.digest import Digest

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")


class Layout:
    """root/blobs/<algorithm>/<hex[:2]>/<hex>, root/tmp/ for fills, root/quarantine/ for bad files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.quarantine = root / "quarantine"
        self.index_path = root / "index.sqlite"

    def create(self) -> None:
        for directory in (self.blobs, self.tmp, self.quarantine):
            directory.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: Digest) -> Path:
        # Digest.parse guarantees a known algorithm and lowercase hex of the right length,
        # so the path can never leave the root.
        return self.blobs / digest.algorithm / digest.hex[:2] / digest.hex

    def remove_temp_files(self) -> int:
        """A temp file is a fill that never committed: nothing can use it after a restart."""
        removed = 0
        for entry in os.scandir(self.tmp):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def scan(self) -> dict[str, int]:
        """digest string -> size for every committed blob file, reading directory entries only."""
        found: dict[str, int] = {}
        for algorithm, hex_length in _HEX_LENGTH.items():
            base = self.blobs / algorithm
            if not base.is_dir():
                continue
            for prefix in os.scandir(base):
                if not prefix.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(prefix.path):
                    name = entry.name
                    if len(name) != hex_length or not name.startswith(prefix.name) or not _HEX.match(name):
                        continue  # not ours; leave it alone
                    found[f"{algorithm}:{name}"] = entry.stat(follow_symlinks=False).st_size
        return found
