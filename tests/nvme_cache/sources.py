"""Working in-process fill sources for store tests: the store's source protocol, fed from bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

from nvme_cache import Digest


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


class BytesSource:
    """Serves `data` in `chunk` pieces; counts opens; can pause, corrupt or break on request."""

    def __init__(
        self,
        data: bytes,
        *,
        chunk: int = 64 * 1024,
        report_size: bool = True,
        corrupt_last_byte: bool = False,
        break_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.data = data
        self.chunk = chunk
        self.report_size = report_size
        self.corrupt_last_byte = corrupt_last_byte
        self.break_after = break_after
        self.delay = delay
        self.opens = 0
        self.gate: asyncio.Event | None = None  # when set, streaming waits for it after 1st chunk

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[_Stream]:
        self.opens += 1
        yield _Stream(self)


class _Stream:
    source = "origin"

    def __init__(self, owner: BytesSource) -> None:
        self._owner = owner
        self.size = len(owner.data) if owner.report_size else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        owner = self._owner
        data = owner.data
        if owner.corrupt_last_byte and data:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        for offset in range(0, len(data), owner.chunk):
            if owner.break_after is not None and offset >= owner.break_after:
                raise ConnectionResetError("upstream closed mid-body")
            yield data[offset : offset + owner.chunk]
            if offset == 0 and owner.gate is not None:
                await owner.gate.wait()
            if owner.delay:
                await asyncio.sleep(owner.delay)
            else:
                await asyncio.sleep(0)
