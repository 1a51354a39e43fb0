"""Working in-process fill sources for store tests: the store's source protocol, fed from bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import AsyncIterator

from nvme_cache import Digest, Landed


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


class BytesRanges:
    """A range source (nvme_cache.RangeSource) over `data`, answering on the fill's threads like
    the origin does: 206 for a range, or 200 with everything when `ranged` is off. Records every
    request; `delay` per read makes one connection slow; `corrupt_at` flips that byte; `hold_at`:
    a read that reaches that offset waits (on its thread) until `release` is set, after setting
    `holding`; `short_by`: a ranged answer that starts past byte 0 ends that many bytes early (its
    headers still promise the whole range)."""

    source = "origin"

    def __init__(
        self,
        data: bytes,
        *,
        ranged: bool = True,
        max_parallel: int = 4,
        parallel_min_size: int = 64 * 1024,
        read_size: int = 8 * 1024,
        delay: float = 0.0,
        corrupt_at: int | None = None,
        hold_at: int | None = None,
        short_by: int = 0,
    ) -> None:
        self.data = bytearray(data)
        self.short_by = short_by
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        if corrupt_at is not None:
            self.data[corrupt_at] ^= 0xFF
        self.ranged = ranged
        self.max_parallel = max_parallel
        self.parallel_min_size = parallel_min_size
        self.read_size = read_size
        self.delay = delay
        self.requests: list[tuple[int, int | None]] = []

    @contextlib.asynccontextmanager
    async def open(self, start: int, end: int | None) -> AsyncIterator[_RangeBody]:
        self.requests.append((start, end))
        if not self.ranged:
            yield _RangeBody(self, 0, len(self.data), ranged=False)
            return
        stop = len(self.data) if end is None else min(end, len(self.data))
        if start > 0:
            stop -= self.short_by
        yield _RangeBody(self, start, stop, ranged=True)

    def opener(self) -> object:
        """A FillSource that carries this as its `ranges`, as registry_mirror.upstream._sources does."""

        @contextlib.asynccontextmanager
        async def never_streamed(offset: int = 0) -> AsyncIterator[None]:
            raise AssertionError("a range fill never opens the stream")
            yield

        never_streamed.ranges = self  # type: ignore[attr-defined]
        return never_streamed


class _RangeBody:
    def __init__(self, owner: BytesRanges, start: int, stop: int, *, ranged: bool) -> None:
        self._owner = owner
        self._position = start
        self._stop = stop
        self.start = start
        self.total = len(owner.data)
        self.ranged = ranged

    def readinto(self, buffer: memoryview) -> int:
        import time

        if self._owner.delay:
            time.sleep(self._owner.delay)
        hold_at = self._owner.hold_at
        if hold_at is not None and self._position <= hold_at < self._position + len(buffer):
            self._owner.holding.set()
            self._owner.release.wait(30)
        count = min(len(buffer), self._stop - self._position, self._owner.read_size)
        buffer[:count] = self._owner.data[self._position : self._position + count]
        self._position += count
        return count


class LandingSource:
    """A stream that, once the fill hands it the temp file (`land_in`), writes each chunk into it
    itself and yields `Landed` (as a peer download does). `corrupt_chunk`: the bytes written for
    that chunk differ from `data` in one byte. `hold_chunk`: after writing that chunk into the
    file, wait for `released` before yielding it."""

    def __init__(self, data: bytes, *, chunk: int = 64 * 1024, corrupt_chunk: int | None = None) -> None:
        self.data = data
        self.chunk = chunk
        self.corrupt_chunk = corrupt_chunk
        self.hold_chunk: int | None = None
        self.written = asyncio.Event()  # the held chunk is in the file
        self.released = asyncio.Event()
        self.landed = 0
        self.fd: int | None = None

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[_LandingStream]:
        yield _LandingStream(self)


class _LandingStream:
    source = "peer"

    def __init__(self, owner: LandingSource) -> None:
        self._owner = owner
        self.size = len(owner.data)

    def land_in(self, fd: int | None, direct: bool = False) -> None:
        self._owner.fd = fd

    async def __aiter__(self) -> AsyncIterator[bytes | Landed]:
        owner = self._owner
        for index, offset in enumerate(range(0, len(owner.data), owner.chunk)):
            data = owner.data[offset : offset + owner.chunk]
            if owner.fd is None:
                yield data
                continue
            if index == owner.corrupt_chunk:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            os.pwrite(owner.fd, data, offset)
            if index == owner.hold_chunk:
                owner.written.set()
                await owner.released.wait()
            owner.landed += 1
            yield Landed(len(data))
