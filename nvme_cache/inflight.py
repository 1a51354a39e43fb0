"""One fill per digest: pieces land in a temp file in any order, readers take what is there.

A fill runs in its own task (never inside a response generator: Starlette cancels those when a
client leaves). Bytes come from one of two kinds of source:

- a **range source** (the origin): the fill asks for byte ranges itself, first the one a reader
  needs, then, for a big blob from an origin that answers Range, up to `max_parallel` ranges at
  once. Receiving, writing and hashing run on threads with blocking sockets and preallocated
  buffers (`readinto`, `pwrite`, `hashlib` all release the GIL): the event loop never touches a
  byte of it.
- a **stream source** (peers, a delta rebuild, a hub): ordered chunks from an async iterator,
  written and hashed on worker threads as they arrive.

Either way the temp file has a record of which ranges are present, readers wait only for the
range they need (one waiting at the edge of a range fill may take its bytes straight from the
receive buffers instead: nvme_cache/readalong.py), and the whole-blob digest is computed in order
as the contiguous prefix grows (never rereading what it hashed). The blob enters the cache only
after the whole digest and size match. A full read holds back its last bytes until then, so a
body that turns out wrong is always cut short, never completed; a Range read may complete with
the source's bytes for that range (docs/architecture.md says why that is safe).

When the disk is full (ENOSPC after one eviction and retry) or the blob can never fit, the fill
degrades to pass-through: chunks go to the attached readers through small queues and nothing is
cached. The fastest reader paces that stream; a reader that joins after its first bytes went by,
or that still has no room a moment (_FALL_BEHIND) after the others took a chunk, continues on a
stream of its own from the source, verified from the hash state at its offset, so nobody waits for
a slow reader and nobody is cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal, Protocol, overload

from nvme_cache import metrics
from nvme_cache.errors import FillFailed, FillUnavailable, SourceFailed, VerificationFailed
from nvme_cache.fileio import DirectWriter, aligned_buffer, no_read_ahead, read_present, write_at
from nvme_cache.present import PresentRanges, union
from nvme_cache.readalong import LiveSegment
from nvme_cache.sendfile import FileSegment, ShortRead, segment_chunks
from nvme_cache.threads import start_named_thread
from oci.digest import Digest

log = logging.getLogger("nvme_cache.fill")

_QUEUE_DEPTH = 2  # chunks buffered per reader in pass-through mode
_SLOW_READER_TIMEOUT = 30.0  # a pass-through stream whose every reader stalled this long ends
_FALL_BEHIND = 1.0  # a pass-through reader still without room this long after the others moves on alone
_HASH_CHECKPOINTS = 16  # hash states kept at recent chunk ends, for readers that move on alone
_FELL_BEHIND = (-1, b"")  # queued to a pass-through reader that must continue on its own stream
_MOVE_ON = bytes(1)  # what that reader's next read returns (compared by identity)
PIECE_SIZE = 4 * 1024 * 1024  # the unit ranges are claimed in; a reader's demand asks for one
_RUN_PIECES = 2  # pieces per request in parallel mode: few requests, yet a demand waits little
_SEGMENT_MAX = 64 * 1024 * 1024  # one zero-copy send at most (the reader re-checks state between)
_RANGE_RETRIES = 2  # a range whose connection broke is asked for again this often
_RECEIVE_CHUNK = 256 * 1024  # fits the CPU's L2 with room: received, written and hashed while hot
_RECEIVE_BUFFERS = 4  # per receiving thread: the hasher works on one while the next arrives
_NOTICE_BYTES = 4 * 1024 * 1024  # readers hear of new bytes this often (each is a loop wake-up)
_SLOW_STREAM = 128 * 1024 * 1024  # bytes/s over _SLOW_WINDOW: slower, and helper connections join
_SLOW_WINDOW = 0.5
_READBACK_CHUNK = 256 * 1024  # a landed chunk is hashed in reads this size: they stay in L2
_LIVE_MAX = 2  # read-along sockets per fill: each push is a socket write on the receiving thread


@dataclass(frozen=True)
class Landed:
    """A stream's chunk that the stream wrote into the fill's temp file itself, at its offset,
    and checked before yielding it (a peer's piece, against its published hash). The fill marks
    it present and hashes it from the page cache: the bytes never cross the event loop, and the
    piece never waits in a 4 MiB buffer that has left the CPU cache."""

    length: int


class SourceStream(Protocol):
    """What a stream fill reads from: a peer download, a delta rebuild, a hub response.

    A stream may also have `tap(offset, chunk)`: called on the fill's worker thread after each
    chunk is written (p2p hashes pieces there, off the event loop); and `land_in(fd, direct)`: the
    fill hands it the temp file (None: no longer), and the stream may then yield `Landed` chunks,
    written with `nvme_cache.DirectWriter(fd, direct)` (around the page cache where it can).
    Until a chunk is yielded, its bytes in the file are not present: no reader sees them.
    """

    size: int | None
    source: str  # "origin" | "peer" | "delta": the label bytes are counted under

    def __aiter__(self) -> AsyncIterator[bytes | bytearray | Landed]: ...  # bytearray: a reused buffer


class RangeBody(Protocol):
    """An open response for a byte range. `readinto` blocks: it runs on a fill worker thread."""

    ranged: bool  # the source honoured the Range (False: this is the whole blob from byte 0)
    start: int  # offset of the first byte this body carries
    total: int | None  # the blob's size as the source states it

    def readinto(self, buffer: memoryview) -> int: ...


class RangeSource(Protocol):
    """A source the fill may ask for any byte range, several at once (the origin)."""

    source: str
    max_parallel: int  # concurrent ranges one fill may use
    parallel_min_size: int  # blobs smaller than this use one request

    def open(self, start: int, end: int | None) -> AbstractAsyncContextManager[RangeBody]:
        """Bytes [start, end) (end None: to the end); raises on any error status. A `start` past
        the blob's end may be answered from byte 0 instead (`body.start`)."""
        ...


class FillSource(Protocol):
    """Opens a stream for a fill (offset: where a resumed download starts). A source that also
    has a `ranges` attribute (a RangeSource) is fetched by ranges instead."""

    def __call__(self, offset: int = 0) -> AbstractAsyncContextManager[SourceStream]: ...


class FillHooks(Protocol):
    """What a fill needs from its store."""

    def reserve(self, size: int) -> bool: ...

    def release(self, size: int) -> None: ...

    def make_room(self, size: int) -> None: ...

    def commit(self, fill: Fill) -> None: ...

    def fill_done(self, fill: Fill) -> None: ...


def ranges_of(source: object) -> RangeSource | None:
    ranges = getattr(source, "ranges", None)
    return ranges if ranges is not None and hasattr(ranges, "open") else None


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
        first_offset: int = 0,
        piece_size: int = PIECE_SIZE,
        direct_writes: bool = False,
    ) -> None:
        self.digest = digest
        self.temp_path = temp_path
        self.final_path = final_path
        self.media_type = media_type
        self.expected_size = expected_size
        self.size: int | None = expected_size
        self.source = "origin"
        self.verified = False
        self.committed = False
        self.error: BaseException | None = None
        self.passthrough_from: int | None = None
        self.ranged_requests = 0  # range requests this fill sent (a metric and a test aid)
        self.hashed_in_memory = 0  # bytes hashed from the receive buffer, not read back
        self._open_source = open_source
        self._hooks = hooks
        self._executor = executor
        self._chunk_size = chunk_size
        self._complete_abandoned = complete_abandoned
        self._piece_size = piece_size
        self._receive_chunk = min(_RECEIVE_CHUNK, chunk_size)
        self._first_offset = first_offset - first_offset % self._piece_size
        self._fd: int | None = None
        self._direct_writes = direct_writes
        # Worker threads never touch _fd: each takes its own descriptor (`_own_fd`), so a fill that
        # fails and closes _fd while a thread still writes never lets that write reach whatever
        # file gets the number next. _fd_lock orders the two.
        self._fd_lock = threading.Lock()
        # direct_writes asked for, and the filesystem takes O_DIRECT: readers then read present
        # bytes in, with no read-ahead
        self._may_write_direct = False
        self._reserved = 0
        self._received = 0
        self._tap: Callable[[int, Any], None] | None = None
        self._hash_failure: BaseException | None = None  # why the hasher thread stopped the fill
        self._land: Callable[[int | None, bool], None] | None = None  # the stream's `land_in`, if any
        self._readback: memoryview | None = None  # _hash_landed's buffer, made on first use
        self._hasher = hashlib.new(digest.algorithm)
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        self._queues: set[asyncio.Queue[tuple[int, bytes] | None]] = set()
        self._broadcast_to = 0  # end of the furthest chunk sent to pass-through readers
        # (offset, hash state after the bytes before it): a reader leaving the pass-through stream
        # at a chunk boundary verifies its own stream from there, without fetching the start again.
        self._checkpoints: deque[tuple[int, Any]] = deque(maxlen=_HASH_CHECKPOINTS)
        self._readers = 0
        self._live: set[LiveSegment] = set()  # read-along readers the receivers push to (under _lock)
        self._receives = False  # a range source: its bytes arrive in our own buffers (pushes possible)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Shared with worker threads, under _lock.
        self._lock = threading.Lock()
        self._landed = threading.Condition(self._lock)
        self._present = PresentRanges()
        self._claims: dict[int, tuple[int, int]] = {}
        self._demand: list[int] = []
        self._stopping = False
        self._handoff: dict[int, tuple[memoryview, Callable[[], None]]] = {}  # offset -> chunk
        self._main_started: float | None = None
        self._main_bytes = 0
        self._main_at: int | None = None  # where the main stream's next byte lands
        self._main_done = False
        self._helpers: list[asyncio.Task[None]] = []
        self._wake_helpers = asyncio.Event()  # a reader waits for a piece, or the main stream ended

    # -- what readers and peers see ------------------------------------------------------------
    @property
    def written(self) -> int:
        """Bytes present from offset 0 without a gap."""
        with self._lock:
            return self._present.prefix()

    def has(self, start: int, end: int) -> bool:
        with self._lock:
            return self._present.covers(start, end)

    # -- the fill task -------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"fill {self.digest}")

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
            ranges = ranges_of(self._open_source)
            if ranges is None:
                await self._fetch_stream()
            else:
                try:
                    await self._fetch_ranges(ranges)
                except _Uncached:
                    await self._fetch_uncached(ranges)
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

    def _set_size(self, reported: int | None) -> None:
        if reported is not None and self.expected_size is not None and reported != self.expected_size:
            raise VerificationFailed(f"{self.digest}: source reports {reported} bytes, expected {self.expected_size}")
        if reported is not None:
            self.size = reported

    def _open_temp(self, size: int | None) -> bool:
        """Reserve room and create the temp file, not yet allocated; False: serve it uncached."""
        if size is not None:
            if not self._hooks.reserve(size):
                return False
            self._reserved = size
        self._fd = os.open(self.temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        probe = DirectWriter(self._fd, self._direct_writes)  # does this filesystem take O_DIRECT?
        self._may_write_direct = probe.direct
        probe.close()
        if self._may_write_direct:
            no_read_ahead(self._fd)  # the read-backs of landed and disk-full bytes read present ranges only
        return True

    def _own_fd(self) -> int:
        """Worker thread: a descriptor of the temp file for the caller to close."""
        with self._fd_lock:
            if self._fd is None:
                raise FillFailed(f"fill of {self.digest} ended")
            return os.dup(self._fd)

    def _take_fd(self) -> int | None:
        """The fill's own descriptor, taken away from `_own_fd` (which fails from now on)."""
        with self._fd_lock:
            fd, self._fd = self._fd, None
        return fd

    async def _open_allocated(self, size: int | None) -> bool:
        """`_open_temp`, then the whole file allocated off the loop: a 1 GiB file on tmpfs is
        zeroed as it is allocated, 0.4 s here, during which the loop would serve nobody."""
        if not self._open_temp(size):
            return False
        if size and not await self._allocate(size):
            log.warning("disk full while filling %s: serving it uncached", self.digest)
            self._drop_temp()
            return False
        return True

    def _drop_temp(self) -> None:
        """Closes and removes the temp file, if there is one: its room goes back to the disk."""
        fd = self._take_fd()
        if fd is None:
            return
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)

    async def _allocate(self, size: int, offset: int = 0) -> bool:
        """Allocating the whole blob turns a full disk into one answer (evict, retry, else stream
        uncached) instead of a failed write halfway through. False: no room.

        The allocation runs on a worker thread (tmpfs zeroes the pages: 0.4 s per GiB here); the
        eviction between the two tries runs here on the loop, like every other change to the
        store's index."""
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            if await loop.run_in_executor(self._executor, self._try_allocate, size, offset):
                return True
            if attempt == 0:
                self._hooks.make_room(size)
        return False

    def _try_allocate(self, size: int, offset: int) -> bool:
        """Worker thread: one posix_fallocate; False: the disk is full."""
        fd = self._own_fd()
        try:
            os.posix_fallocate(fd, offset, size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return True  # the filesystem cannot: writes report ENOSPC instead
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return False
        finally:
            os.close(fd)
        return True

    # -- range fills ---------------------------------------------------------------------------
    async def _fetch_ranges(self, ranges: RangeSource) -> None:
        self._receives = True
        first_start = self._first_offset if self.size is None or self._first_offset < self.size else 0
        main_run = max(ranges.parallel_min_size, self._piece_size)
        async with ranges.open(first_start, first_start + main_run) as body:
            self.ranged_requests += 1
            self.source = ranges.source
            self._set_size(body.total)
            if not body.ranged:
                metrics.range_fills.add(1, {"mode": "single_stream"})
                await self._single_body(body)
                return
            if self.size is None:
                raise SourceFailed(f"{self.digest}: a ranged answer without the blob's size")
            if body.start == 0 < first_start:
                first_start = 0  # the first reader's offset lies past the end (the size was not known)
            self._check_range(body, first_start)
            if not self._open_temp(self.size):
                raise _Uncached()
            # Allocating 512 MiB on tmpfs zeroes it, a quarter of a second during which writes to
            # the file wait: only the first reader's range now, the rest once it is answered.
            first_end = min(self.size, first_start + main_run)
            if not await self._allocate(first_end - first_start, first_start):
                raise _Uncached()
            with self._lock:  # before any reader looks: the main stream is on its way
                self._main_at = first_start
                self._claims[-1] = (first_start, min(self.size, first_start + main_run))
            self._started.set()
            self._notify()
            hashing = self._start_hasher()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._main_stream(ranges, body, first_start, main_run))
                    group.create_task(self._add_helpers(ranges, group))
            except BaseExceptionGroup as failures:
                self._stop()
                raise failures.exceptions[0] from None
            except BaseException:
                self._stop()
                raise
        metrics.range_fills.add(1, {"mode": "parallel" if self._helpers else "ranged"})
        log.debug(
            "%s: %d range requests, %d helpers, %d of %d bytes hashed from the receive buffers",
            self.digest,
            self.ranged_requests,
            len(self._helpers),
            self.hashed_in_memory,
            self.size,
        )
        await hashing
        self._finish_hash()
        await self._settle()

    async def _single_body(self, body: RangeBody) -> None:
        """The origin ignored Range: this one response is the whole blob, read to its end."""
        if not await self._open_allocated(self.size):
            raise _Uncached()
        self._started.set()
        self._notify()
        hashing = self._start_hasher()
        try:
            got = await self._receive_on_thread(body, 0, self.size)
        except BaseException:
            self._stop()
            raise
        if self.size is None:
            with self._lock:
                self.size = got
                self._landed.notify_all()
        elif got != self.size:
            self._stop()
            raise VerificationFailed(f"{self.digest}: got {got} bytes, expected {self.size}")
        await hashing
        self._finish_hash()
        await self._settle()

    async def _fetch_uncached(self, ranges: RangeSource) -> None:
        """No room to cache it: one stream from byte 0 to the attached readers, hashed as it goes."""
        self.passthrough_from = 0
        # A ranged attempt may have hashed its first bytes already (its hasher thread keeps the
        # old state, see _hash_prefix): this stream is hashed from byte 0 on a state of its own.
        self._hasher = hashlib.new(self.digest.algorithm)
        self._checkpoints.clear()
        self._drop_temp()  # the attempt's temp file, if it made one
        if self._reserved:
            self._hooks.release(self._reserved)
            self._reserved = 0
        async with ranges.open(0, None) as body:
            self.ranged_requests += 1
            self._set_size(body.total)
            if body.start != 0:
                raise SourceFailed(f"{self.digest}: asked for the whole blob, got bytes from {body.start}")
            self._started.set()
            self._notify()
            await self._copy(self._body_chunks(body))
        self._verify()
        self.verified = True
        self._notify()
        await self._broadcast_end()

    async def _body_chunks(self, body: RangeBody) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()

        def read() -> bytes:
            buffer = bytearray(self._chunk_size)
            count = body.readinto(memoryview(buffer))
            return bytes(buffer[:count]) if count < len(buffer) else bytes(buffer)

        while chunk := await loop.run_in_executor(self._executor, read):
            yield chunk

    def _check_range(self, body: RangeBody, start: int) -> None:
        if body.start != start or body.total != self.size:
            raise SourceFailed(f"{self.digest}: asked for bytes from {start}, got {body.start} of {body.total}")

    async def _main_stream(self, ranges: RangeSource, first: RangeBody, start: int, run: int) -> None:
        """One connection from the first reader's offset on, in runs of `run` bytes, wrapping
        round to the start: the cheap path (its chunks are hashed from the receive buffer)."""
        assert self.size is not None
        end = min(self.size, start + run)
        with self._lock:
            self._claims[-1] = (start, end)
        try:
            got = await self._receive_on_thread(first, start, end, main=True)
            if got < end:
                raise SourceFailed(f"{self.digest}: range ended at {got}, expected {end}")
            with self._lock:  # allocating is not receiving: it must not make the stream look slow
                self._main_started = None
            if not await self._allocate(self.size):
                log.warning("disk full while filling %s: serving it uncached", self.digest)
                raise _Uncached()
            await self._range_worker(ranges, worker=-1, position=end, run=run)
        finally:
            self._main_done = True
            self._wake_helpers.set()
            self._notify()

    async def _add_helpers(self, ranges: RangeSource, group: asyncio.TaskGroup) -> None:
        """Helper connections join the main stream when a reader waits for a piece the main
        stream is far from, or when one connection is slower than _SLOW_STREAM (an origin or CDN
        that caps each connection). They take pieces from the top of the blob downwards, so the
        main stream rarely runs into them."""
        assert self.size is not None
        big = self.size >= ranges.parallel_min_size
        since = self._loop_time()
        while not self._main_done and len(self._helpers) < ranges.max_parallel - 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_helpers.wait(), 0.25)
            self._wake_helpers.clear()
            with self._lock:
                waiting = bool(self._demand)
                done, seconds = self._main_progress()
            slow = big and seconds >= _SLOW_WINDOW and done / seconds < _SLOW_STREAM
            if waiting or (slow and self._loop_time() - since >= _SLOW_WINDOW):
                count = 1 if waiting and not slow else ranges.max_parallel - 1 - len(self._helpers)
                for _ in range(count):
                    worker = len(self._helpers)
                    self._helpers.append(group.create_task(self._range_worker(ranges, worker=worker)))
                since = self._loop_time()

    def _main_progress(self) -> tuple[int, float]:
        claim = self._claims.get(-1)
        if claim is None or self._main_started is None:
            return 0, 0.0
        return self._main_bytes, self._loop_time() - self._main_started

    def _loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def _range_worker(
        self, ranges: RangeSource, *, worker: int, position: int | None = None, run: int = 0
    ) -> None:
        failures = 0
        follow: int | None = None  # a helper keeps reading on after a reader's piece
        while True:
            claim = self._claim(worker, position, run, follow)
            if claim is None:
                return
            start, end = claim
            follow = end
            try:
                async with ranges.open(start, end) as body:
                    self.ranged_requests += 1
                    self._check_range(body, start)
                    got = await self._receive_on_thread(body, start, end, main=worker < 0)
                if got < end:
                    raise SourceFailed(f"{self.digest}: range {start}-{end} ended at {got}")
                failures = 0
                if position is not None:
                    position = end
            except (asyncio.CancelledError, VerificationFailed, _Uncached):
                raise
            except Exception as exc:
                failures += 1
                if self._stopping or failures > _RANGE_RETRIES:
                    raise
                metrics.range_retries.add(1)
                log.info("range %d-%d of %s failed (%r): asking again", start, end, self.digest, exc)
            finally:
                with self._lock:
                    self._claims.pop(worker, None)

    def _claim(self, worker: int, position: int | None, run: int, follow: int | None = None) -> tuple[int, int] | None:
        """The next range for a worker. The main stream (`position` given): onwards from where
        it is, then round from the start. A helper: a piece a reader waits for, else on from its
        last range while that is missing (a reader of a range reads on: aria2c, hfd), else the
        highest missing piece."""
        assert self.size is not None
        size = self.size
        with self._lock:
            taken = union(self._present.intervals(), list(self._claims.values()))
            if position is not None:
                start = taken.next_missing(position)
                if start >= size:
                    start = taken.next_missing(0)
                if start >= size:
                    return None
                end = taken.missing_end(start, min(size, start + run))
                self._claims[worker] = (start, end)
                return start, end
            while self._demand:
                wanted = self._demand.pop(0)
                start = taken.next_missing(wanted)
                if start < size and start < wanted + self._piece_size:
                    end = taken.missing_end(start, min(size, start - start % self._piece_size + self._piece_size))
                    self._claims[worker] = (start, end)
                    metrics.demand_fetches.add(1)
                    return start, end
            if follow is not None and follow < size and taken.run_end(follow) == follow:
                end = taken.missing_end(follow, min(size, follow + _RUN_PIECES * self._piece_size))
                self._claims[worker] = (follow, end)
                return follow, end
            gap = taken.highest_gap(size)
            if gap is None:
                return None
            gap_start, gap_end = gap
            start = max(
                gap_start, (gap_end - 1) // self._piece_size * self._piece_size - (_RUN_PIECES - 1) * self._piece_size
            )
            self._claims[worker] = (start, gap_end)
            return start, gap_end

    def _want(self, offset: int) -> None:
        """A reader waits at `offset`: unless the main stream is about to get there, a helper
        fetches its piece next."""
        with self._lock:
            main = self._claims.get(-1)
            at = self._main_at if self._main_at is not None else (main[0] if main else None)
            if at is not None and not self._main_done and at <= offset < at + 2 * self._piece_size:
                return
            if offset not in self._demand and len(self._demand) < 64:
                log.debug("%s: a reader waits at %d (main stream at %s)", self.digest, offset, at)
                self._demand.append(offset)
                self._wake_helpers.set()

    async def _receive_on_thread(self, body: RangeBody, start: int, end: int | None, *, main: bool = False) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._receive, body, start, end, main)

    def _receive(self, body: RangeBody, start: int, end: int | None, main: bool = False) -> int:
        """Worker thread: the body's bytes straight into small reused buffers (they stay in the
        CPU cache from the socket to the file to the hash), then into the file. A chunk that
        extends the contiguous prefix is handed to the hasher as it is: no second read."""
        fd = self._own_fd()
        writer = DirectWriter(fd, self._may_write_direct)
        try:
            return self._receive_into(writer, body, start, end, main)
        finally:
            writer.close()
            os.close(fd)

    def _receive_into(self, writer: DirectWriter, body: RangeBody, start: int, end: int | None, main: bool) -> int:
        free: SimpleQueue[int] = SimpleQueue()
        # Page-aligned where whole chunks may go to the file with O_DIRECT (nvme_cache/fileio.py).
        make = aligned_buffer if writer.direct else _heap_buffer
        buffers = [make(self._receive_chunk) for _ in range(_RECEIVE_BUFFERS)]
        for index in range(_RECEIVE_BUFFERS):
            free.put(index)
        offset = start
        unnoticed = 0
        if main:
            with self._lock:
                self._main_started = self._loop_time_threadsafe()
                self._main_bytes = 0
                self._main_at = start
        while end is None or offset < end:
            index = self._take_buffer(free)
            buffer = buffers[index]
            want = self._receive_chunk if end is None else min(self._receive_chunk, end - offset)
            count = body.readinto(buffer[:want])
            if not count:
                free.put(index)
                break
            try:
                # Around the page cache only while nobody reads it back (a prefetch, a client that
                # left, readers that take their bytes from these buffers).
                writer.write(buffer[:count], offset, around_cache=self._readers <= len(self._live))
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _Uncached() from exc  # before the allocation said so: stream it uncached
                raise
            with self._lock:
                if self._present.prefix() == offset:
                    self._handoff[offset] = (buffer[:count], functools.partial(free.put, index))
                else:
                    free.put(index)
                self._present.add(offset, offset + count)
                if main:
                    self._main_bytes += count
                    self._main_at = offset + count
                self._landed.notify_all()
            if self._live:
                self._push_live(buffer[:count], offset)
            offset += count
            unnoticed += count
            if unnoticed >= _NOTICE_BYTES or (end is not None and offset >= end):
                metrics.bytes_written.add(unnoticed, {"source": self.source})
                unnoticed = 0
                self._notify_threadsafe()
        if unnoticed:
            metrics.bytes_written.add(unnoticed, {"source": self.source})
            self._notify_threadsafe()
        return offset

    def _push_live(self, chunk: memoryview, offset: int) -> None:
        """Receiving thread: the chunk just written goes to the read-along readers waiting for it."""
        with self._lock:
            targets = list(self._live)
        ended = [target for target in targets if not target.offer(chunk, offset)]
        if ended:
            with self._lock:
                self._live.difference_update(ended)
            self._notify_threadsafe()

    def _take_buffer(self, free: SimpleQueue[int]) -> int:
        while True:
            if self._stopping:
                why = f": hashing failed: {self._hash_failure!r}" if self._hash_failure is not None else ""
                raise FillFailed(f"fill of {self.digest} stopped{why}")
            with contextlib.suppress(Empty):
                return free.get(timeout=0.5)

    def _loop_time_threadsafe(self) -> float:
        return time.monotonic() if self._loop is None else self._loop.time()

    def _start_hasher(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            try:
                self._hash_prefix()
            except BaseException as exc:  # handed to the fill task, which fails the fill
                # The receivers wait for the buffers it holds, and the fill task awaits this only
                # once they are done: stop them, or the fill and its readers wait for ever.
                log.warning("hashing %s failed: %r", self.digest, exc)
                self._hash_failure = exc
                self._stop()
                loop.call_soon_threadsafe(_settle_future, future, exc)
            else:
                loop.call_soon_threadsafe(_settle_future, future, None)

        # A fill whose receivers failed first never awaits it: its error is theirs, not asyncio's
        # "exception was never retrieved".
        future.add_done_callback(_retrieve)

        # Its own thread: it waits for pieces for the whole fill and must never wait for a
        # pool thread that is itself waiting.
        start_named_thread(run, f"hash {self.digest.hex[:12]}")
        return future

    def _hash_prefix(self) -> None:
        """Hasher thread: hash the contiguous prefix as it grows. Chunks handed over by the
        receiver are hashed from its buffer; bytes that landed out of order are read back once
        from the page cache when the prefix reaches them."""
        hasher = self._hasher  # its own reference: a fill restarted uncached hashes on a new state
        fd = self._open_temp_for_reading()
        try:
            buffer = memoryview(bytearray(self._receive_chunk * 4))
            hashed = 0
            while True:
                with self._landed:
                    while True:
                        if self._stopping:
                            return
                        handed = self._handoff.pop(hashed, None)
                        upto = self._present.prefix()
                        if handed is not None or upto > hashed:
                            break
                        if self.size is not None and hashed >= self.size:
                            self._received = hashed
                            return
                        self._landed.wait(1.0)
                    if handed is None:
                        later = [offset for offset in self._handoff if offset > hashed]
                        upto = min([upto, hashed + len(buffer), *later])
                if handed is not None:
                    view, release = handed
                    hasher.update(view)
                    if self._tap is not None:
                        self._tap(hashed, view)
                    hashed += len(view)
                    self.hashed_in_memory += len(view)
                    release()
                    continue
                count = os.preadv(fd, [buffer[: upto - hashed]], hashed)
                if count <= 0:
                    raise SourceFailed(f"temp file of {self.digest} ended early")
                hasher.update(buffer[:count])
                if self._tap is not None:
                    self._tap(hashed, buffer[:count])
                hashed += count
        finally:
            os.close(fd)

    def _finish_hash(self) -> None:
        self._verify()
        self.verified = True
        self._notify()

    async def _settle(self) -> None:
        if self.passthrough_from is None:
            await self._commit()

    def _stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._landed.notify_all()

    def _notify_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._notify)

    # -- stream fills --------------------------------------------------------------------------
    async def _fetch_stream(self) -> None:
        async with self._open_source() as stream:
            self.source = stream.source
            self._tap = getattr(stream, "tap", None)
            self._set_size(stream.size)
            if not await self._open_allocated(self.size):
                self.passthrough_from = 0
            self._land = getattr(stream, "land_in", None)
            if self._land is not None and self.passthrough_from is None:
                # Peer pieces go around the page cache if nobody reads along as the download starts.
                self._land(self._fd, self._may_write_direct and not self._readers)
            self._started.set()
            self._notify()
            await self._copy(stream)
        self._verify()
        self.verified = True
        self._notify()
        await self._broadcast_end()
        await self._settle()

    async def _copy(self, stream: SourceStream | AsyncIterator[bytes | bytearray]) -> None:
        loop = asyncio.get_running_loop()
        # A stream that reuses its buffers (a peer download) hears when one is free again.
        release: Callable[[bytes | bytearray | Landed], None] = getattr(stream, "release", None) or _keep
        received = 0
        pending: tuple[int, bytes | bytearray | Landed, Awaitable[tuple[object, ...]]] | None = None
        async for chunk in stream:
            length = chunk.length if isinstance(chunk, Landed) else len(chunk)
            if not length:
                continue
            if self.size is not None and received + length > self.size:
                raise VerificationFailed(f"{self.digest}: source sent more than {self.size} bytes")
            # Double buffering: the worker writes and hashes this chunk while the loop receives
            # the next one.
            if pending is not None:
                await self._finish_chunk(*pending)
                release(pending[1])
            future: Awaitable[tuple[object, ...]]
            if isinstance(chunk, Landed):
                future = asyncio.gather(
                    loop.run_in_executor(self._executor, self._hash_landed, received, length),
                    return_exceptions=True,
                )
            else:
                # The write and the hash of one chunk run on two workers at once (both drop the GIL).
                future = asyncio.gather(
                    loop.run_in_executor(self._executor, self._write_chunk, chunk, received),
                    loop.run_in_executor(self._executor, self._hash_chunk, chunk, received),
                    return_exceptions=True,  # both halves finish before either error is raised
                )
            pending = (received, chunk, future)
            received += length
        if pending is not None:
            await self._finish_chunk(*pending)
            release(pending[1])
        self._received = received

    def _write_chunk(self, chunk: bytes | bytearray, offset: int) -> None:
        """Worker thread: a stream's chunk (bytes objects: never aligned, so always buffered)."""
        if self.passthrough_from is not None:
            return
        fd = self._own_fd()
        try:
            write_at(fd, chunk, offset)
        finally:
            os.close(fd)

    def _hash_chunk(self, chunk: bytes | bytearray | memoryview, offset: int) -> None:
        self._hasher.update(chunk)
        self._checkpoints.append((offset + len(chunk), self._hasher.copy()))
        if self._tap is not None:
            self._tap(offset, chunk)

    def _hash_landed(self, offset: int, length: int) -> None:
        """Worker thread: a landed chunk read back from the page cache in pieces that stay in
        the CPU cache, then hashed like a received one."""
        buffer = self._readback
        if buffer is None:
            buffer = self._readback = memoryview(bytearray(_READBACK_CHUNK))
        fd = self._own_fd()
        try:
            if self._may_write_direct:  # landed around the page cache: read the chunk in at once
                read_present(fd, offset, length)
            done = 0
            while done < length:
                count = os.preadv(fd, [buffer[: min(len(buffer), length - done)]], offset + done)
                if count <= 0:
                    raise SourceFailed(f"temp file of {self.digest} ended early")
                self._hash_chunk(buffer[:count], offset + done)
                done += count
        finally:
            os.close(fd)

    def _read_landed(self, offset: int, length: int) -> bytes:
        """Worker thread: landed bytes, for pass-through readers once the disk filled up."""
        fd = self._own_fd()
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    async def _finish_chunk(
        self, offset: int, chunk: bytes | bytearray | Landed, future: Awaitable[tuple[object, ...]]
    ) -> None:
        try:
            # The hash is done before anything (a write retry, the next chunk) touches it again.
            for result in await future:
                if isinstance(result, BaseException):
                    raise result
        except OSError as exc:
            if isinstance(chunk, Landed) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            await self._after_disk_full(offset, chunk)
        if isinstance(chunk, Landed):
            if self.passthrough_from is not None:  # landed just before the disk filled up
                loop = asyncio.get_running_loop()
                landed = await loop.run_in_executor(self._executor, self._read_landed, offset, chunk.length)
                await self._broadcast(offset, landed)
                return
            length = chunk.length
        elif self.passthrough_from is not None:
            await self._broadcast(offset, chunk)
            return
        else:
            length = len(chunk)
        metrics.bytes_written.add(length, {"source": self.source})
        with self._lock:
            self._present.add(offset, offset + length)
        self._notify()

    async def _after_disk_full(self, offset: int, chunk: bytes | bytearray) -> None:
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
        if self._land is not None:
            self._land(None, False)  # from now on the stream hands over bytes
        self._notify()  # the chunk was hashed already, beside the write that failed

    async def _broadcast(self, offset: int, chunk: bytes | bytearray) -> None:
        chunk = bytes(chunk)  # readers keep it past this chunk's buffer (a peer's piece)
        self._broadcast_to = offset + len(chunk)
        await self._offer((offset, chunk), pace=True)

    async def _offer(self, item: tuple[int, bytes] | None, *, pace: bool) -> None:
        """`item` to every pass-through reader. `pace`: when none has room, wait (up to
        _SLOW_READER_TIMEOUT) for the fastest; then any still without room after _FALL_BEHIND
        fell behind and continues alone, so nobody waits on it and nobody is left parked."""
        full = []
        for queue in list(self._queues):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                full.append(queue)
        if not full:
            return
        puts = {asyncio.ensure_future(queue.put(item)): queue for queue in full}
        try:
            if pace and len(full) == len(self._queues):
                await asyncio.wait(puts, timeout=_SLOW_READER_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait(puts, timeout=_FALL_BEHIND)
        finally:
            for put in puts:
                put.cancel()
        for put, queue in puts.items():
            if put.cancelled() or not put.done():
                self._fell_behind(queue)

    def _fell_behind(self, queue: asyncio.Queue[tuple[int, bytes] | None]) -> None:
        """That reader continues on its own stream; what was queued for it it fetches again."""
        self._detach(queue)
        queue.put_nowait(_FELL_BEHIND)

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
        await self._offer(None, pace=False)

    async def _commit(self) -> None:
        fd = self._take_fd()  # every byte is written; the fsync below makes them durable
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
        self._stop()
        if isinstance(error, _Uncached):
            return
        self.error = error
        self._started.set()
        self._notify()
        for queue in self._queues:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def _cleanup(self) -> None:
        if (fd := self._take_fd()) is not None:
            os.close(fd)
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

    async def read(self, start: int = 0, end: int | None = None, *, hold_back: bool = True) -> AsyncIterator[bytes]:
        """Bytes [start, end) as they arrive; the final chunk only after the blob verified
        (unless `hold_back` is off, see `segments`)."""
        async for item in self.segments(start, end, hold_back=hold_back):
            if not isinstance(item, FileSegment):
                yield item
                continue
            try:
                async for data in segment_chunks(item, self._chunk_size, self._executor):
                    yield data
            except ShortRead:
                raise FillFailed(f"temp file of {self.digest} ended early") from None

    @overload
    def segments(
        self, start: int = 0, end: int | None = None, *, hold_back: bool = True, live: Literal[False] = False
    ) -> AsyncIterator[bytes | FileSegment]: ...
    @overload
    def segments(
        self, start: int = 0, end: int | None = None, *, hold_back: bool = True, live: bool
    ) -> AsyncIterator[bytes | FileSegment | LiveSegment]: ...
    def segments(
        self, start: int = 0, end: int | None = None, *, hold_back: bool = True, live: bool = False
    ) -> AsyncIterator[bytes | FileSegment | LiveSegment]:
        """Bytes [start, end) as file segments (or, streaming uncached, as bytes) once present.

        `hold_back`: the last chunk only after the whole blob verified (always for a full read;
        a Range read may finish on the source's bytes for that range).
        `live`: where the reader would wait for bytes not received yet, a LiveSegment the consumer
        may push to its socket (nvme_cache.readalong).
        """
        return self._segments(start, end, hold_back, live)

    async def _segments(
        self, start: int, end: int | None, hold_back: bool, live: bool
    ) -> AsyncIterator[bytes | FileSegment | LiveSegment]:
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(_QUEUE_DEPTH)
        self._queues.add(queue)
        joined_at = self._broadcast_to  # pass-through bytes before this never reach this queue
        self._readers += 1
        fd: int | None = None
        try:
            await self.wait_started()
            if self.passthrough_from != 0:
                fd = self._open_for_reading()
            offset = start
            while True:
                self._raise_if_failed()
                stop = end if end is not None else self.size
                if stop is not None and offset >= stop:
                    break
                if self.passthrough_from is not None and (fd is None or offset >= self.passthrough_from):
                    if offset < joined_at:  # joined a pass-through stream that is past its bytes
                        self._detach(queue)
                        metrics.passthrough_own_streams.add(1, {"reason": "late"})
                        source = self._read_alone(offset, end, hold_back)
                    else:
                        source = self._read_queued(queue, offset, end, hold_back)
                    async for data in source:
                        yield data
                    return
                with self._lock:
                    available = self._present.run_end(offset)
                if self.passthrough_from is not None:
                    available = min(available, self.passthrough_from)
                if available <= offset:
                    self._want(offset)
                    if live and (segment := self._live_segment(offset, start, stop, hold_back)) is not None:
                        yield segment
                        live = segment.used  # a consumer that declined reads from the file
                        offset = segment.cursor
                        continue
                    await self._changed.wait()
                    continue
                upto = available if stop is None else min(available, stop)
                if hold_back and (stop is None or upto >= stop) and not self.verified:
                    # The final bytes wait for the whole digest: a wrong body is never completed.
                    keep = min(self._chunk_size, upto - start)
                    if upto - keep <= offset:
                        await self._changed.wait()
                        continue
                    upto -= keep
                upto = min(upto, offset + _SEGMENT_MAX)
                assert fd is not None
                yield FileSegment(fd, offset, upto - offset, read_in=self._may_write_direct)
                offset = upto
            self._detach(queue)  # nothing more to receive; don't hold the fill back
            if hold_back:
                await self._wait_verified()
        finally:
            self._detach(queue)
            self._readers -= 1
            if fd is not None:
                os.close(fd)
            self._reader_left()

    def _live_segment(self, offset: int, start: int, stop: int | None, hold_back: bool) -> LiveSegment | None:
        if not self._receives or stop is None or self._stopping or self.passthrough_from is not None:
            return None  # stream chunks (peers, hubs) are not ours to push: those readers read the file
        if len(self._live) >= _LIVE_MAX:
            return None
        # Never past what may go out before the whole blob is verified (the held-back chunk).
        limit = stop - min(self._chunk_size, stop - start) if hold_back and not self.verified else stop
        return LiveSegment(offset, limit, self._run_live) if limit > offset else None

    async def _run_live(self, segment: LiveSegment) -> None:
        """Keeps `segment` among the fill's read-along targets until it ends: its limit, a full
        socket or a gone client (the receiver ends it), the fill failing or stopping, or its bytes
        arriving another way (a helper range, a stream chunk: the reader sends those from the file)."""
        with self._lock:
            if len(self._live) >= _LIVE_MAX or self._present.run_end(segment.cursor) > segment.cursor:
                return
            self._live.add(segment)
        try:
            while not segment.ended:
                changed = self._changed
                if self.error is not None or self._stopping:
                    segment.end("failed")
                    break
                with self._lock:
                    cursor = segment.cursor
                    caught = self._present.run_end(cursor) > cursor
                if caught and segment.end("caught", at=cursor):
                    break
                await changed.wait()
        finally:
            segment.end(None)
            with self._lock:
                self._live.discard(segment)

    async def _wait_verified(self) -> None:
        while not self.verified:
            self._raise_if_failed()
            await self._changed.wait()
        self._raise_if_failed()

    async def _read_queued(
        self, queue: asyncio.Queue[tuple[int, bytes] | None], offset: int, end: int | None, hold_back: bool
    ) -> AsyncIterator[bytes]:
        """Pass-through: chunks from this reader's queue; the last one only after verification."""
        held: bytes | None = None
        while True:
            self._raise_if_failed()
            stop = end if end is not None else self.size
            if stop is not None and offset >= stop:
                break
            data = await self._next_queued(queue, offset, stop)
            if data is _MOVE_ON:
                if held is not None:  # not sent yet: the own stream sends it again
                    offset -= len(held)
                metrics.passthrough_own_streams.add(1, {"reason": "behind"})
                async for data in self._read_alone(offset, end, hold_back):
                    yield data
                return
            if data is None:
                if self.verified:
                    break
                continue
            offset += len(data)
            if held is not None:
                yield held
            held = data if hold_back else None
            if not hold_back:
                yield data
        self._detach(queue)
        if hold_back:
            await self._wait_verified()
        if held is not None:
            yield held

    async def _next_queued(
        self, queue: asyncio.Queue[tuple[int, bytes] | None], offset: int, stop: int | None
    ) -> bytes | None:
        """The next bytes for this reader; None: nothing new yet (or the end); _MOVE_ON: it fell behind."""
        item = await queue.get()
        if item is _FELL_BEHIND:
            return _MOVE_ON
        if item is None:
            self._raise_if_failed()
            if self.verified and (stop is None or offset >= stop):
                return None
            if self.verified:
                raise FillUnavailable(f"{self.digest} streamed uncached and bytes from {offset} are gone")
            return None
        chunk_offset, chunk = item
        if chunk_offset + len(chunk) <= offset:
            return None
        if chunk_offset > offset:
            raise FillUnavailable(f"{self.digest} is streaming uncached and bytes from {offset} are gone")
        # Take the whole rest of a queued chunk: the next one starts after it.
        return chunk[offset - chunk_offset : None if stop is None else stop - chunk_offset]

    async def _read_alone(self, offset: int, end: int | None, hold_back: bool) -> AsyncIterator[bytes]:
        """A pass-through reader on a stream of its own from the source: bytes [offset, end). A
        full read stays verified: it hashes on from the state at `offset` (from byte 0 when none
        is kept) and holds its last chunk back until the digest matched."""
        loop = asyncio.get_running_loop()
        begin, hasher = offset, None
        if hold_back:
            hasher = self._hash_state_at(offset)
            if hasher is None:
                begin, hasher = 0, hashlib.new(self.digest.algorithm)
        position = begin
        held: bytes | None = None
        try:
            async for chunk in self._own_stream(begin, end):
                if hasher is not None:
                    await loop.run_in_executor(self._executor, hasher.update, chunk)
                skip = max(0, offset - position)
                position += len(chunk)
                data = chunk[skip:] if skip else chunk
                if not data:
                    continue
                if not hold_back:
                    yield data
                    continue
                if held is not None:
                    yield held
                held = data
        except FillFailed:
            raise
        except Exception as exc:  # the source's own errors: the response must still end cleanly
            raise SourceFailed(f"{self.digest}: the reader's own stream failed: {exc}") from exc
        bounds = [bound for bound in (end, self.size) if bound is not None]
        if hasher is None and bounds and position < min(bounds):
            # A Range reader has no digest to catch a short answer: it is an error, not an end.
            raise SourceFailed(f"{self.digest}: the reader's own stream ended at {position}, expected {min(bounds)}")
        if hasher is not None and (
            (self.size is not None and position != self.size) or hasher.hexdigest() != self.digest.hex
        ):
            metrics.verification_failures.add(1)
            raise VerificationFailed(f"{self.digest}: a pass-through reader's own stream did not verify")
        if held is not None:
            yield held

    def _hash_state_at(self, offset: int) -> Any:
        if offset == 0:
            return hashlib.new(self.digest.algorithm)
        for at, state in list(self._checkpoints):  # appended on worker threads: take a snapshot
            if at == offset:
                return state.copy()
        return None

    async def _own_stream(self, begin: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [begin, end) from the fill's source, fetched again for one reader."""
        ranges = ranges_of(self._open_source)
        if ranges is not None:
            async with ranges.open(begin, end) as body:
                async for chunk in _trimmed(self._body_chunks(body), body.start, begin, end):
                    yield chunk
            return
        async with self._open_source() as stream:  # a stream source starts at byte 0
            async for chunk in _trimmed(stream, 0, begin, end):
                yield chunk

    def _detach(self, queue: asyncio.Queue[tuple[int, bytes] | None]) -> None:
        self._queues.discard(queue)
        while not queue.empty():  # frees a broadcast that waits for room in this queue
            queue.get_nowait()

    def _open_for_reading(self) -> int:
        try:
            return self._open_temp_for_reading()
        except FileNotFoundError:
            return os.open(self.final_path, os.O_RDONLY)  # committed between our checks

    def _open_temp_for_reading(self) -> int:
        """The temp file for a reader of present ranges; no read-ahead into the rest, which may
        still be written around the page cache (`no_read_ahead`)."""
        fd = os.open(self.temp_path, os.O_RDONLY)
        if self._may_write_direct:
            no_read_ahead(fd)
        return fd

    def _reader_left(self) -> None:
        if self._complete_abandoned or self._task is None or self._task.done():
            return
        if self._readers <= 0:
            self._task.cancel()


def _keep(chunk: bytes | bytearray | Landed) -> None:
    """A stream's chunks are its own to drop (no buffer to give back)."""


def _heap_buffer(size: int) -> memoryview:
    return memoryview(bytearray(size))


async def _trimmed(
    chunks: AsyncIterator[bytes] | SourceStream, position: int, begin: int, end: int | None
) -> AsyncIterator[bytes]:
    """The parts of `chunks` (starting at byte `position`) within [begin, end)."""
    async for chunk in chunks:
        if isinstance(chunk, Landed):  # only a stream the fill gave its file lands chunks
            raise SourceFailed("a reader's own stream landed bytes in a file")
        low = max(begin - position, 0)
        high = len(chunk) if end is None else min(len(chunk), end - position)
        position += len(chunk)
        if high > low:
            # bytes: a peer download's chunks are its reusable buffers (bytearray)
            yield bytes(chunk[low:high]) if (low, high) != (0, len(chunk)) or not isinstance(chunk, bytes) else chunk
        if end is not None and position >= end:
            return


class _Uncached(Exception):
    """The blob cannot be cached here (no room): the fill restarts as a pass-through stream."""


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _settle_future(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


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
