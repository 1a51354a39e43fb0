"""One fill per digest, read by any number of readers while it grows.

A fill runs in its own task (never inside a response generator: Starlette cancels those when a
client leaves). It writes each chunk to a temp file and hashes it on a worker thread, then tells
the readers how far the file has grown. Readers hold back their last chunk until the whole blob
verified, so a body that turns out wrong is always cut short, never completed.

When the disk is full (ENOSPC after one eviction and retry) or the blob can never fit, the fill
degrades to pass-through: chunks go to the attached readers through small queues and nothing is
cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from nvme_cache import metrics
from nvme_cache.digest import Digest
from nvme_cache.errors import FillFailed, FillUnavailable, SourceFailed, VerificationFailed

log = logging.getLogger("nvme_cache.fill")

_QUEUE_DEPTH = 2  # chunks buffered per reader in pass-through mode
_SLOW_READER_TIMEOUT = 30.0


class SourceStream(Protocol):
    """What a fill reads from: an origin response, a peer download, a delta rebuild.

    A stream may also have `tap(offset, chunk)`: called on the fill's worker thread after each
    chunk is written (p2p hashes pieces there, off the event loop).
    """

    size: int | None
    source: str  # "origin" | "peer" | "delta": the label bytes are counted under

    def __aiter__(self) -> AsyncIterator[bytes]: ...


FillSource = Callable[[], AbstractAsyncContextManager[SourceStream]]


class FillHooks(Protocol):
    """What a fill needs from its store."""

    def reserve(self, size: int) -> bool: ...

    def release(self, size: int) -> None: ...

    def make_room(self, size: int) -> None: ...

    def commit(self, fill: Fill) -> None: ...

    def fill_done(self, fill: Fill) -> None: ...


class Fill:
    def __init__(
        self,
        digest: Digest,
        temp_path: Path,
        final_path: Path,
        open_source: FillSource,
        hooks: FillHooks,
        *,
        expected_size: int | None,
        media_type: str | None,
        executor: Executor | None,
        chunk_size: int,
        complete_abandoned: bool,
    ) -> None:
        self.digest = digest
        self.temp_path = temp_path
        self.final_path = final_path
        self.media_type = media_type
        self.expected_size = expected_size
        self.size: int | None = expected_size
        self.source = "origin"
        self.written = 0  # bytes in the temp file, readable by readers
        self.verified = False
        self.committed = False
        self.error: BaseException | None = None
        self.passthrough_from: int | None = None
        self._open_source = open_source
        self._hooks = hooks
        self._executor = executor
        self._chunk_size = chunk_size
        self._complete_abandoned = complete_abandoned
        self._fd: int | None = None
        self._reserved = 0
        self._received = 0
        self._tap: Callable[[int, bytes], None] | None = None
        self._hasher = hashlib.new(digest.algorithm)
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        self._queues: set[asyncio.Queue[tuple[int, bytes] | None]] = set()
        self._task: asyncio.Task[None] | None = None

    # -- the fill task -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"fill {self.digest}")

    async def wait(self) -> None:
        """Wait for the fill to end; raises its error."""
        assert self._task is not None
        await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error

    async def _run(self) -> None:
        metrics.fills_in_flight.add(1)
        result = "committed"
        try:
            await self._fetch()
        except asyncio.CancelledError:
            result = "cancelled"
            self._fail(FillFailed(f"fill of {self.digest} was cancelled"))
        except VerificationFailed as exc:
            result = "verification_failed"
            metrics.verification_failures.add(1)
            log.warning("verification failed for %s: %s", self.digest, exc)
            self._fail(exc)
        except FillFailed as exc:
            result = "source_failed"
            self._fail(exc)
        except Exception as exc:  # a source error we do not know: still every reader must hear it
            result = "source_failed"
            log.warning("fill of %s failed: %r", self.digest, exc)
            failure = SourceFailed(f"fetching {self.digest} failed: {exc}")
            failure.__cause__ = exc  # the front end maps e.g. an upstream 404 to BLOB_UNKNOWN
            self._fail(failure)
        else:
            if self.passthrough_from is not None:
                result = "passthrough"
        finally:
            metrics.fills_in_flight.add(-1)
            metrics.fills.add(1, {"result": result})
            await self._cleanup()
            self._hooks.fill_done(self)

    async def _fetch(self) -> None:
        async with self._open_source() as stream:
            self.source = stream.source
            self._tap = getattr(stream, "tap", None)
            self._set_size(stream.size)
            if self.size is not None and not self._reserve(self.size):
                self.passthrough_from = 0
            else:
                self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self._started.set()
            self._notify()
            await self._copy(stream)
        self._verify()
        self.verified = True
        self._notify()
        await self._broadcast_end()
        if self.passthrough_from is None:
            await self._commit()

    def _set_size(self, reported: int | None) -> None:
        if reported is not None and self.expected_size is not None and reported != self.expected_size:
            raise VerificationFailed(f"{self.digest}: source reports {reported} bytes, expected {self.expected_size}")
        if reported is not None:
            self.size = reported

    def _reserve(self, size: int) -> bool:
        if self._hooks.reserve(size):
            self._reserved = size
            return True
        return False

    async def _copy(self, stream: SourceStream) -> None:
        loop = asyncio.get_running_loop()
        received = 0
        pending: tuple[int, bytes, Awaitable[tuple[object, object]]] | None = None
        async for chunk in stream:
            if not chunk:
                continue
            if self.size is not None and received + len(chunk) > self.size:
                raise VerificationFailed(f"{self.digest}: source sent more than {self.size} bytes")
            # Double buffering: the worker writes and hashes this chunk while the loop receives
            # the next one.
            if pending is not None:
                await self._finish_chunk(*pending)
            # The write and the hash of one chunk run on two workers at once (both drop the GIL).
            future = asyncio.gather(
                loop.run_in_executor(self._executor, self._write_chunk, chunk, received),
                loop.run_in_executor(self._executor, self._hash_chunk, chunk, received),
                return_exceptions=True,  # both halves finish before either error is raised
            )
            pending = (received, chunk, future)
            received += len(chunk)
        if pending is not None:
            await self._finish_chunk(*pending)
        self._received = received

    def _write_chunk(self, chunk: bytes, offset: int) -> None:
        if self.passthrough_from is None and self._fd is not None:
            view = memoryview(chunk)
            done = 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)

    def _hash_chunk(self, chunk: bytes, offset: int) -> None:
        self._hasher.update(chunk)
        if self._tap is not None:
            self._tap(offset, chunk)

    async def _finish_chunk(self, offset: int, chunk: bytes, future: Awaitable[tuple[object, object]]) -> None:
        try:
            # The hash is done before anything (a write retry, the next chunk) touches it again.
            for result in await future:
                if isinstance(result, BaseException):
                    raise result
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            await self._after_disk_full(offset, chunk)
        if self.passthrough_from is None:
            metrics.bytes_written.add(len(chunk), {"source": self.source})
            self.written = offset + len(chunk)
            self._notify()
        else:
            await self._broadcast(offset, chunk)

    async def _after_disk_full(self, offset: int, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        remaining = (self.size - offset) if self.size is not None else len(chunk) * 64
        self._hooks.make_room(remaining)
        try:
            await loop.run_in_executor(self._executor, self._write_chunk, chunk, offset)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
        log.warning("disk full while filling %s: serving it uncached", self.digest)
        self.passthrough_from = offset
        self._notify()  # the chunk was hashed already, beside the write that failed

    async def _broadcast(self, offset: int, chunk: bytes) -> None:
        for queue in list(self._queues):
            try:
                await asyncio.wait_for(queue.put((offset, chunk)), _SLOW_READER_TIMEOUT)
            except TimeoutError:
                self._queues.discard(queue)  # that reader stalled; the others go on

    def _verify(self) -> None:
        total = self._received
        if self.size is not None and total != self.size:
            raise VerificationFailed(f"{self.digest}: got {total} bytes, expected {self.size}")
        hexdigest = self._hasher.hexdigest()
        if hexdigest != self.digest.hex:
            raise VerificationFailed(f"content of {self.digest} hashed to {self.digest.algorithm}:{hexdigest}")
        self.size = total

    async def _broadcast_end(self) -> None:
        # Readers of a pass-through fill may be parked on their queue: wake them to see the end.
        for queue in list(self._queues):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.put(None), _SLOW_READER_TIMEOUT)

    async def _commit(self) -> None:
        fd, self._fd = self._fd, None
        assert fd is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, _durable_rename, fd, self.temp_path, self.final_path)
        except OSError as exc:
            # The readers already have verified bytes; only the caching is lost.
            log.warning("could not commit %s to the cache: %s", self.digest, exc)
            return
        self.committed = True
        self._hooks.commit(self)

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self._started.set()
        self._notify()
        for queue in self._queues:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def _cleanup(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path)
        if self._reserved:
            self._hooks.release(self._reserved)
            self._reserved = 0

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- readers -------------------------------------------------------------------------------
    async def wait_started(self) -> None:
        """Returns once the size is known (or the fill failed, then raises)."""
        await self._started.wait()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise FillFailed(str(self.error)) from self.error

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) as they arrive; the final chunk only after the blob verified."""
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(_QUEUE_DEPTH)
        self._queues.add(queue)
        fd: int | None = None
        try:
            await self.wait_started()
            if self.passthrough_from != 0:
                fd = self._open_for_reading()
            offset = start
            held: bytes | None = None
            while True:
                self._raise_if_failed()
                stop = end if end is not None else self.size
                if stop is not None and offset >= stop:
                    break
                data = await self._next_chunk(fd, queue, offset, stop)
                if data is None:
                    continue
                offset += len(data)
                if held is not None:
                    yield held
                held = data
            self._detach(queue)  # nothing more to receive; don't hold the fill back
            while not self.verified:
                self._raise_if_failed()
                await self._changed.wait()
            self._raise_if_failed()
            if held is not None:
                yield held
        finally:
            self._detach(queue)
            if fd is not None:
                os.close(fd)
            self._reader_left()

    async def _next_chunk(
        self, fd: int | None, queue: asyncio.Queue[tuple[int, bytes] | None], offset: int, stop: int | None
    ) -> bytes | None:
        in_file = self.written if self.passthrough_from is None else self.passthrough_from
        want = self._chunk_size if stop is None else min(self._chunk_size, stop - offset)
        if offset < in_file and fd is not None:
            count = min(want, in_file - offset)
            data = await asyncio.get_running_loop().run_in_executor(self._executor, os.pread, fd, count, offset)
            if not data:
                raise FillFailed(f"temp file of {self.digest} ended early")
            return data
        if self.passthrough_from is not None:
            item = await queue.get()
            if item is None:
                self._raise_if_failed()
                return None
            chunk_offset, chunk = item
            if chunk_offset + len(chunk) <= offset:
                return None
            if chunk_offset > offset:
                raise FillUnavailable(f"{self.digest} is streaming uncached and bytes from {offset} are gone")
            # Take the whole rest of a queued chunk: the next one starts after it.
            return chunk[offset - chunk_offset : None if stop is None else stop - chunk_offset]
        await self._changed.wait()
        return None

    def _detach(self, queue: asyncio.Queue[tuple[int, bytes] | None]) -> None:
        self._queues.discard(queue)
        while not queue.empty():  # frees a broadcast that waits for room in this queue
            queue.get_nowait()

    async def read_available(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) that are already in the temp file, without waiting for the rest.

        For peers: p2p serves a piece of a fill in progress once the piece is written (and, for
        a download, verified against its piece hash). Raises FillUnavailable if not there yet.
        """
        if self.error is not None or self.passthrough_from is not None or end > self.written:
            raise FillUnavailable(f"{self.digest}: bytes {start}-{end} are not available")
        fd = self._open_for_reading()
        try:
            loop = asyncio.get_running_loop()
            offset = start
            while offset < end:
                count = min(self._chunk_size, end - offset)
                data = await loop.run_in_executor(self._executor, os.pread, fd, count, offset)
                if not data:
                    raise FillUnavailable(f"temp file of {self.digest} ended early")
                offset += len(data)
                yield data
        finally:
            os.close(fd)

    def _open_for_reading(self) -> int:
        try:
            return os.open(self.temp_path, os.O_RDONLY)
        except FileNotFoundError:
            return os.open(self.final_path, os.O_RDONLY)  # committed between our checks

    def _reader_left(self) -> None:
        if self._complete_abandoned or self._task is None or self._task.done():
            return
        if not self._queues:
            self._task.cancel()


def _durable_rename(fd: int, temp: Path, final: Path) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(temp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
