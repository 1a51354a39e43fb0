"""Read-along from the receive buffers: a reader that waits at the edge of a fill gets the next
bytes sent to its socket by the receiving thread, straight from the buffer they arrived in.

Without it a cold GET's reader is woken once bytes are present and its sending thread reads them
back out of the page cache with `sendfile`. Pushed from the receive buffer they cost one socket
write from memory that is still in the CPU cache, and with `cache.direct_writes` the fill need
not copy them into the page cache at all (docs/architecture.md, "Measured choices"). A push never
blocks the fill: a socket without room for the whole chunk takes what fits, the segment ends, and
the reader goes on from the file at its offset (it comes back once it has caught up). Only a
plain-HTTP response whose connection the ZeroCopySender owns can take pushes; every other reader
declines and reads from the file as before.

The bytes pushed are the bytes written to the temp file, and a segment never reaches past what
the reader may send before the whole blob is verified (a full GET holds its last chunk back), so
a body whose digest fails is still cut short.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Awaitable, Callable

from nvme_cache import metrics


class LiveSegment:
    """Bytes [offset, limit) of a fill that its receiving threads send to the reader's socket as
    they arrive. `Fill.segments(live=True)` yields one where its reader would otherwise wait; the
    consumer runs `push` with a non-blocking socket it owns, or `decline`s, and the reader then
    goes on from `cursor`."""

    def __init__(self, offset: int, limit: int, run: Callable[[LiveSegment], Awaitable[None]]) -> None:
        self.offset = offset
        self.limit = limit
        self.cursor = offset  # the next byte this reader's socket needs
        self.used = False
        self.error: OSError | None = None
        self._run = run
        self._fd = -1
        self._ended = False
        self._lock = threading.Lock()

    def decline(self) -> None:
        """This consumer cannot take pushes: the reader reads from the file from now on."""
        self.used = False

    async def push(self, sock_fd: int) -> int:
        """Lets the fill send to `sock_fd` (non-blocking, this caller's until it returns) until the
        segment ends; the bytes sent. Raises the OSError of a client that went away."""
        self.used = True
        self._fd = sock_fd
        try:
            await self._run(self)
        finally:
            self.end("limit" if self.cursor >= self.limit else None)
            metrics.pushed_bytes.add(self.cursor - self.offset)  # once: a counter add per chunk costs
        if self.error is not None:
            raise self.error
        return self.cursor - self.offset

    @property
    def ended(self) -> bool:
        return self._ended

    def end(self, reason: str | None, *, at: int | None = None) -> bool:
        """No push after this returns. True if this call ended it (`reason`, if any, is counted).
        With `at`: only if nothing was pushed since the caller saw that cursor (bytes for it came
        another way, and the reader sends them from the file)."""
        with self._lock:
            if self._ended or (at is not None and self.cursor != at):
                return False
            self._ended = True
        if reason is not None:
            metrics.live_reads.add(1, {"end": reason})
        return True

    def offer(self, view: memoryview, offset: int) -> bool:
        """Receiving thread: sends the part of the chunk at `offset` that this reader waits for.
        False once the segment has ended (the caller drops it)."""
        with self._lock:
            if self._ended:
                return False
            skip = self.cursor - offset
            if skip < 0 or skip >= len(view):
                return True  # not the bytes at its cursor
            want = min(len(view) - skip, self.limit - self.cursor)
            try:
                sent = os.write(self._fd, view[skip : skip + want])
            except BlockingIOError:
                sent, reason = 0, "behind"
            except OSError as exc:
                self.error = exc if exc.errno is not None else OSError(errno.EPIPE, "client went away")
                sent, reason = 0, "gone"
            else:
                reason = "behind" if sent < want else "limit"
            self.cursor += sent
            if sent == want and self.cursor < self.limit:
                return True
            self._ended = True
        metrics.live_reads.add(1, {"end": reason})
        return False
