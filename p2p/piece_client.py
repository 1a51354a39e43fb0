"""Pieces from a peer, received and checked on a worker thread.

Why not aiohttp on the event loop (it was, until the data-path rework): a 4 MiB piece read through
the loop cost a Python wake-up per socket read, a join into one bytes, and a second pass to hash
it. Here one Range request asks for a run of consecutive pieces the peer holds, the body is read
with blocking `http.client.readinto` straight into one buffer per piece (one copy from the
kernel, GIL released while it waits) and hashed piece by piece as it arrives, while the bytes
are still in the CPU cache. A run of pieces is one request for the uploader too: fewer requests
per GiB through its Python front end. Figures in docs/architecture.md.

A piece is returned only once its hash matches what the seed published; a bad piece ends the run
there, and the pieces before it are kept.

Given the fill's temp file (`land`), a piece is not held in a buffer at all: each read lands in
one small reused buffer, is hashed and written at its offset at once, while it is in the CPU
cache, and the piece comes back as `Landed`. Its bytes are in the file before they are checked,
but they count as present only once the fill takes the verified piece: a bad piece's bytes are
never served, and the next attempt overwrites them.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from nvme_cache import Landed
from nvme_cache.connections import ConnectionPool, Target
from nvme_cache.fileio import DirectWriter, aligned_buffer
from oci import parse_content_range
from p2p.errors import BadPiece, PeerUnreachable, PieceError
from p2p.pieces import matches, piece_digest, piece_hash_state

PIECE_PATH = "/p2p/v1/blobs/"
_READ = 1024 * 1024  # hashed per read: big enough to keep Python out, small enough for the CPU cache
_LAND_READ = 256 * 1024  # a landing read is hashed and written from L2


# Called with each verified piece as soon as its run's thread has it (index, its bytes or Landed).
Arrived = Callable[[int, bytearray | Landed], None]


@dataclass(frozen=True)
class WantedPiece:
    index: int
    start: int
    end: int
    expected: str  # the seed's published piece hash


@dataclass
class Run:
    """What one request brought: verified pieces in order, and why it stopped early, if it did."""

    pieces: list[tuple[int, bytearray | Landed]] = field(default_factory=list)
    error: BaseException | None = None


class DiskFull(OSError):
    """Landing a piece in the fill's file found no room: not the peer's fault."""


class Landing:
    """The fill's temp file as one run writes into it: the run's own descriptor (closed when the
    run ends, so its number is never another file's), written around the page cache where the
    fill says so (`nvme_cache.DirectWriter`), and one lock per file, because two threads writing
    one tmpfs file at once spin on its inode lock (2x the CPU, measured)."""

    def __init__(self, fd: int, lock: threading.Lock, direct: bool = False) -> None:
        self.fd = fd
        self.lock = lock
        self.direct = direct
        self._writer: DirectWriter | None = None  # opened by the first write: a run's thread

    def for_run(self) -> Landing:
        return Landing(os.dup(self.fd), self.lock, self.direct)

    def write(self, data: memoryview, offset: int) -> None:
        if self._writer is None:
            self._writer = DirectWriter(self.fd, self.direct)
        with self.lock:
            _write_at(self._writer, data, offset)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        os.close(self.fd)


class Abort:
    """Lets the event loop stop a run whose task was cancelled: the thread's next read fails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self.requested = False
        self.expired = False  # the piece deadline passed (`expire`): the run failed as stalled

    def attach(self, connection: http.client.HTTPConnection | None) -> None:
        with self._lock:
            self._connection = connection
            if connection is not None and self.requested:
                connection.close()

    def write(self, landing: Landing, data: memoryview, offset: int) -> None:
        """Lands bytes in the fill's file unless the run was given up: once `abort()` has
        returned, this thread writes nothing more (the lock orders the two)."""
        with self._lock:
            if self.requested:
                raise PieceError("cancelled")
            landing.write(data, offset)

    def __call__(self) -> None:
        with self._lock:
            self.requested = True
            self._shut_down()

    def expire(self) -> None:
        """The piece deadline passed: a blocked `readinto` fails now (it loops until its slice is
        full, so a peer trickling a byte per socket timeout would hold it for ever)."""
        with self._lock:
            self.expired = True
            self._shut_down()

    def _shut_down(self) -> None:
        if self._connection is not None and self._connection.sock is not None:
            try:
                self._connection.sock.shutdown(2)  # wakes a blocked readinto
            except OSError:
                pass


class _Watchdog:
    """One thread per run: expires the run when the current piece's deadline passes."""

    def __init__(self, abort: Abort, limit: float) -> None:
        self._abort = abort
        self._limit = limit
        self._deadline = time.monotonic() + limit
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="p2p-piece-deadline", daemon=True)
        self._thread.start()

    def next_piece(self) -> float:
        self._deadline = time.monotonic() + self._limit
        return self._deadline

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(max(0.0, self._deadline - time.monotonic())):
            if time.monotonic() >= self._deadline:
                self._abort.expire()
                return


class Buffers:
    """Piece buffers of one download, reused once the fill has written and hashed them: a fresh
    4 MiB bytearray costs a zero fill and a page fault per 4 KiB, about as much as the copy from
    the socket. Freed with the download, so an idle mirror holds none."""

    def __init__(self, piece_size: int, keep: int) -> None:
        self._piece_size = piece_size
        self._keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        if size == self._piece_size:
            with self._lock:
                if self._free:
                    return self._free.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        if len(buffer) == self._piece_size:
            with self._lock:
                if len(self._free) < self._keep:
                    self._free.append(buffer)


class PieceClient:
    """Keep-alive connections to peers, and the blocking fetch of a run of pieces."""

    def __init__(self, tls: ssl.SSLContext | None, token: str | None, stall_timeout: float) -> None:
        self._pool = ConnectionPool(tls, connect_timeout=stall_timeout, read_timeout=stall_timeout)
        self._token = token
        self._total_timeout = stall_timeout * 4

    def close(self) -> None:
        self._pool.close()

    def fetch(
        self,
        base_url: str,
        digest: str,
        wanted: Sequence[WantedPiece],
        buffers: Buffers,
        abort: Abort,
        land: Landing | None = None,
        arrived: Arrived | None = None,
    ) -> Run:
        """Worker thread: pieces `wanted` (consecutive) from the peer at `base_url`; with `land`
        (the fill's temp file, this run's own descriptor: closed here), written into it. Each
        verified piece also goes to `arrived` at once. A piece may take 4x the stall timeout at
        most: a peer trickling bytes is given up, a slow one (under an upload cap) is not."""
        run = Run()
        target = Target.of(base_url)
        path = f"{urlsplit(base_url).path.rstrip('/')}{PIECE_PATH}{digest}"
        start, end = wanted[0].start, wanted[-1].end
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        connection: http.client.HTTPConnection | None = None
        reusable = False
        watchdog = _Watchdog(abort, self._total_timeout)
        try:
            connection, response = self._open(target, path, headers, abort)
            self._check(response, start, end)
            for piece in wanted:
                if abort.requested:  # given up while this thread was connecting: nothing to wake then
                    raise PieceError("cancelled")
                deadline = watchdog.next_piece()
                if land is None:
                    data: bytearray | Landed = self._receive(response, piece, buffers, deadline)
                else:
                    data = _land(response, piece, land, abort, deadline)
                run.pieces.append((piece.index, data))
                if arrived is not None:
                    arrived(piece.index, data)
            reusable = response.isclosed() and not response.will_close
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which decides
            run.error = exc
            if abort.expired and not abort.requested:
                run.error = TimeoutError(f"a piece took longer than {self._total_timeout:g} s (trickled)")
        finally:
            watchdog.stop()
            if land is not None:
                land.close()
            abort.attach(None)
            if connection is not None:
                if reusable and not abort.requested and not abort.expired:
                    self._pool.give_back(target, connection)
                else:
                    connection.close()
        return run

    def _open(
        self, target: Target, path: str, headers: dict[str, str], abort: Abort
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        try:
            connection, response = self._pool.exchange(target, path, headers, attach=abort.attach)
        except (OSError, http.client.HTTPException) as exc:
            if abort.requested:
                raise PieceError("cancelled") from None
            if _refused(exc):
                raise PeerUnreachable(f"{target.host}:{target.port}: {exc}") from None
            raise PieceError(f"GET {path}: {type(exc).__name__}: {exc}") from None
        connection.sock.settimeout(self._pool.read_timeout())
        return connection, response

    @staticmethod
    def _check(response: http.client.HTTPResponse, start: int, end: int) -> None:
        if response.status != 206:
            response.read(4096)
            raise PieceError(f"peer answered {response.status}")
        answered = parse_content_range(response.getheader("Content-Range"))
        if answered is None or (answered.start, answered.end) != (start, end - 1):
            raise PieceError(
                f"peer sent Content-Range {response.getheader('Content-Range')!r}, asked {start}-{end - 1}"
            )
        length = response.getheader("Content-Length")
        if length is not None and length != str(end - start):
            raise PieceError(f"peer sent {length} bytes, expected {end - start}")

    @staticmethod
    def _receive(
        response: http.client.HTTPResponse, piece: WantedPiece, buffers: Buffers, deadline: float
    ) -> bytearray:
        buffer = buffers.take(piece.end - piece.start)
        try:
            with memoryview(buffer) as view:
                state = piece_hash_state(piece.expected)
                done = 0
                while done < len(buffer):
                    count = response.readinto(view[done : done + _READ])
                    if not count:
                        raise PieceError(f"peer closed after {done} of {len(buffer)} bytes of piece {piece.index}")
                    state.update(view[done : done + count])
                    done += count
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"piece {piece.index} took longer than the total timeout")
            if not matches(state, piece.expected):
                raise BadPiece(piece.index, piece.expected, piece_digest(state))
        except BaseException:
            buffers.give(buffer)
            raise
        return buffer


_landing = threading.local()  # one landing buffer per receiving thread, reused for every piece


def _land(
    response: http.client.HTTPResponse, piece: WantedPiece, landing: Landing, abort: Abort, deadline: float
) -> Landed:
    buffer: memoryview | None = getattr(_landing, "buffer", None)
    if buffer is None:
        buffer = _landing.buffer = aligned_buffer(_LAND_READ)  # whole reads go to the file with O_DIRECT
    state = piece_hash_state(piece.expected)
    size = piece.end - piece.start
    done = 0
    while done < size:
        count = response.readinto(buffer[: min(len(buffer), size - done)])
        if not count:
            raise PieceError(f"peer closed after {done} of {size} bytes of piece {piece.index}")
        state.update(buffer[:count])
        abort.write(landing, buffer[:count], piece.start + done)
        done += count
        if time.monotonic() > deadline:
            raise TimeoutError(f"piece {piece.index} took longer than the total timeout")
    if not matches(state, piece.expected):
        raise BadPiece(piece.index, piece.expected, piece_digest(state))
    return Landed(size)


def _write_at(writer: DirectWriter, data: memoryview, offset: int) -> None:
    try:
        writer.write(data, offset)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(exc.errno, f"no room to land a piece: {exc.strerror}") from None
        raise


def _refused(exc: BaseException) -> bool:
    """Nobody answers at that address (dead, or never there), as opposed to a slow or busy peer."""
    return isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or getattr(exc, "errno", None) in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    )
