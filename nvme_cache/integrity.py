"""Checking cached bytes against their digest: which files were verified since this process
started (and have not been written since), and the hashing reads that verify them.

Bytes on disk can rot or be changed behind the cache's back. A blob counts as verified only for
the file identity (inode, size, mtime, ctime) it had when it was hashed; any write to the file
changes that identity, so the next read hashes it again. Bit rot that changes nothing in the
inode is left to the scrubber (nvme_cache.scrub).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvme_cache.errors import VerificationFailed
from oci.digest import Digest


class BlobCorrupt(VerificationFailed):
    """A cached file did not match its digest or size; its reader's body must be aborted."""


@dataclass(frozen=True)
class FileIdentity:
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_hashed(fd: int, offset: int, count: int, hasher: Any) -> bytes:
    data = os.pread(fd, count, offset)
    hasher.update(data)  # hashlib releases the GIL on large buffers: this runs on a worker thread
    return data


async def hashed_chunks(
    fd: int, digest: Digest, size: int, chunk_size: int, executor: Executor | None
) -> AsyncIterator[bytes]:
    """The whole file in chunks, hashed on worker threads (one read ahead of the consumer, never
    two updates at once); the last chunk is held back until the digest and size match, so a
    corrupt file never reaches a complete-looking end. Raises BlobCorrupt."""
    loop = asyncio.get_running_loop()
    hasher = hashlib.new(digest.algorithm)

    def start(position: int) -> asyncio.Future[bytes]:
        return loop.run_in_executor(executor, _read_hashed, fd, position, min(chunk_size, size - position), hasher)

    offset = 0
    ahead = start(0) if size > 0 else None
    while ahead is not None:
        data = await ahead
        if not data:
            raise BlobCorrupt(f"{digest}: file ended at {offset} of {size} bytes")
        offset += len(data)
        ahead = start(offset) if offset < size else None
        if ahead is None:
            trailing = await loop.run_in_executor(executor, os.pread, fd, 1, offset)
            if trailing or hasher.hexdigest() != digest.hex:
                raise BlobCorrupt(f"{digest}: cached bytes do not match the digest")
        yield data
    if size == 0 and hasher.hexdigest() != digest.hex:
        raise BlobCorrupt(f"{digest}: cached bytes do not match the digest")


def file_matches(
    path: Path, digest: Digest, size: int, chunk_size: int, pace: Any = None
) -> tuple[bool, FileIdentity | None]:
    """Whether the file at `path` has exactly `size` bytes hashing to `digest` (blocking), and
    the identity it was checked at. `pace(n)` is called after each chunk (the scrubber's rate)."""
    hasher = hashlib.new(digest.algorithm)
    total = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            before = FileIdentity.of(os.fstat(handle.fileno()))
            while chunk := handle.read(chunk_size):
                hasher.update(chunk)
                total += len(chunk)
                if pace is not None:
                    pace(len(chunk))
            after = FileIdentity.of(os.fstat(handle.fileno()))
    except OSError:
        return False, None
    ok = total == size and hasher.hexdigest() == digest.hex
    return ok, (after if after == before else None)
