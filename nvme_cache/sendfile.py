"""Zero-copy bodies: file ranges handed to the kernel with `os.sendfile` instead of copied twice
through Python (pread into a bytes object, then a socket write).

An ASGI server has no standard way to send a file range yet (uvicorn has no `pathsend`), so
`ZeroCopySender.for_asgi` recognises uvicorn's HTTP/1.1 cycle behind the ASGI `send` and writes
straight to its socket while the response owns the connection: after the headers are flushed and
before the final empty body message, nothing else writes to it. Anything else (TLS, HTTP/2, another
server, a wrapped `send`) gets None and the caller copies. The blocking `sendfile` loop runs on a
worker thread and waits for socket space with `poll`, so a slow client never blocks the event
loop, and a client that stops reading for `stall_timeout` is cut off.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import threading
from collections.abc import AsyncIterator, Callable, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from nvme_cache import metrics
from nvme_cache.errors import BlobVanished
from nvme_cache.fileio import read_present
from nvme_cache.readalong import LiveSegment
from nvme_cache.threads import worker_pool

_POLL_SLICE_MS = 500  # how often a waiting sender checks whether the response was abandoned
_MAX_SENDERS = 256  # threads that may sit in a sendfile loop at once; beyond that, copy instead


@dataclass(frozen=True)
class FileSegment:
    """Bytes [offset, offset + count) of an open file, to be sent as they are.

    The fd belongs to the reader that yielded it and stays open until that reader moves on.
    """

    fd: int
    offset: int
    count: int
    # The bytes were written around the page cache into a file read without read-ahead: the
    # sending thread reads them in at once first (`sendfile` alone would read 64 KiB at a time).
    read_in: bool = False
    # False once the file was quarantined (or dropped) under its reader: the send is cut off.
    valid: Callable[[], bool] | None = field(default=None, compare=False)

    def check(self) -> None:
        if self.valid is not None and not self.valid():
            raise BlobVanished(f"cached file behind fd {self.fd} was quarantined while it was sent")


class ClientStalled(OSError):
    """The client read nothing for the whole stall timeout."""


class ZeroCopySender:
    """Sends file segments on one uvicorn HTTP/1.1 connection with `os.sendfile`."""

    _executor = worker_pool("sendfile", _MAX_SENDERS)
    _busy = 0
    _busy_lock = threading.Lock()

    def __init__(self, cycle: Any, sock_fd: int, stall_timeout: float) -> None:
        self._cycle = cycle
        self._fd = sock_fd
        self._stall_timeout = stall_timeout
        self._abandoned = threading.Event()
        self.sent = 0  # bytes this sender put on the wire (the access log adds them)

    @classmethod
    def for_asgi(cls, scope: MutableMapping[str, Any], send: Any, stall_timeout: float = 30.0) -> ZeroCopySender | None:
        """A sender for this response, or None where only copying is possible."""
        if scope.get("type") != "http" or scope.get("scheme") != "http" or scope.get("method") == "HEAD":
            return None
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if cycle is None or transport is None or not hasattr(cycle, "expected_content_length"):
            return None
        if getattr(cycle, "chunked_encoding", True) or transport.get_extra_info("sslcontext") is not None:
            return None
        sock = transport.get_extra_info("socket")
        try:
            fd = sock.fileno() if sock is not None else -1
        except (OSError, ValueError):
            return None
        return cls(cycle, fd, stall_timeout) if fd >= 0 else None

    async def send(self, segment: FileSegment) -> bool:
        """Sends the whole segment; False when there is no room to do it here (copy instead).

        Raises OSError when the client went away or stalled: the response is then incomplete.
        """
        if segment.count <= 0:
            return True
        cycle = self._cycle
        if cycle.disconnected or cycle.expected_content_length < segment.count:
            return False
        with ZeroCopySender._busy_lock:
            if ZeroCopySender._busy >= _MAX_SENDERS:
                return False
            ZeroCopySender._busy += 1
        try:
            await self._flush(cycle.transport)
            # The thread sends on its own duplicate of the socket: when the client goes away, the
            # server closes its descriptor, and the number may at once belong to a new
            # connection; a duplicate cannot be reused under the thread.
            # The same for the file: its reader closes it when the response ends.
            if cycle.disconnected or cycle.transport.is_closing():
                raise ConnectionResetError(errno.ECONNRESET, "client went away")
            sock_fd = os.dup(self._fd)
            own = FileSegment(
                os.dup(segment.fd), segment.offset, segment.count, read_in=segment.read_in, valid=segment.valid
            )
            loop = asyncio.get_running_loop()
            try:
                sent = await asyncio.shield(loop.run_in_executor(self._executor, self._send_blocking, own, sock_fd))
            except asyncio.CancelledError:
                self._abandoned.set()  # the thread notices within one poll slice, then closes sock_fd
                raise
        finally:
            with ZeroCopySender._busy_lock:
                ZeroCopySender._busy -= 1
        # uvicorn counts body bytes against Content-Length: these went around it.
        cycle.expected_content_length -= sent
        self.sent += sent
        metrics.sendfile_bytes.add(sent)
        return True

    async def push(self, segment: LiveSegment) -> int:
        """Lets the fill push `segment`'s bytes to this connection as they arrive; the bytes sent
        (0 where this connection cannot take pushes now). Raises OSError when the client went away."""
        cycle = self._cycle
        if cycle.disconnected or cycle.expected_content_length < segment.limit - segment.offset:
            segment.decline()
            return 0
        await self._flush(cycle.transport)
        if cycle.disconnected or cycle.transport.is_closing():
            raise ConnectionResetError(errno.ECONNRESET, "client went away")
        sock_fd = os.dup(self._fd)  # its own descriptor, as for sendfile: the number cannot be reused under it
        try:
            await segment.push(sock_fd)
        finally:
            os.close(sock_fd)  # the segment has ended: no receiving thread writes to it any more
            pushed = segment.cursor - segment.offset
            cycle.expected_content_length -= pushed  # these went around uvicorn too
            self.sent += pushed
        return pushed

    async def _flush(self, transport: Any) -> None:
        # The headers (or earlier body bytes) must be on the wire before the kernel sends ours;
        # a client that takes none of them for the stall timeout is cut off, as everywhere else.
        loop = asyncio.get_running_loop()
        last, since = transport.get_write_buffer_size(), loop.time()
        while (size := transport.get_write_buffer_size()) > 0:
            if transport.is_closing():
                raise ConnectionResetError(errno.ECONNRESET, "client went away")
            if size < last:
                last, since = size, loop.time()
            elif loop.time() - since >= self._stall_timeout:
                metrics.stalled_clients.add(1, {"path": "sendfile"})
                raise ClientStalled(errno.ETIMEDOUT, "client read nothing for the stall timeout")
            await asyncio.sleep(0.001)

    def _send_blocking(self, segment: FileSegment, sock_fd: int) -> int:
        try:
            return self._send_all(segment, sock_fd)
        finally:
            os.close(sock_fd)
            os.close(segment.fd)

    def _send_all(self, segment: FileSegment, sock_fd: int) -> int:
        offset, remaining = segment.offset, segment.count
        if segment.read_in:
            read_present(segment.fd, offset, remaining)
        poller = select.poll()
        poller.register(sock_fd, select.POLLOUT)
        waited_ms = 0
        while remaining > 0:
            if self._abandoned.is_set() or self._cycle.disconnected:
                raise ConnectionAbortedError(errno.ECONNABORTED, "response abandoned")
            segment.check()
            try:
                sent = os.sendfile(sock_fd, segment.fd, offset, remaining)
            except BlockingIOError:
                events = poller.poll(_POLL_SLICE_MS)
                if events and events[0][1] & (select.POLLERR | select.POLLHUP):
                    raise ConnectionResetError(errno.ECONNRESET, "client went away") from None
                waited_ms = 0 if events else waited_ms + _POLL_SLICE_MS
                if waited_ms >= self._stall_timeout * 1000:
                    metrics.stalled_clients.add(1, {"path": "sendfile"})
                    raise ClientStalled(errno.ETIMEDOUT, "client read nothing for the stall timeout") from None
                continue
            if sent == 0:
                raise OSError(errno.EIO, "file ended before the segment did")
            offset += sent
            remaining -= sent
            waited_ms = 0
        return segment.count


EXTENSION = "nvme_cache.sendfile"


class ZeroCopyMiddleware:
    """Outermost ASGI layer: offers a ZeroCopySender in `scope["extensions"]` where the server
    allows one. It must wrap the app directly, since a middleware that wraps `send` hides the
    server's connection.

    Copied body bytes get the same stall timeout as zero-copy ones: a body message whose bytes
    the client does not take for `stall_timeout` (the server's write buffer did not shrink) ends
    the response with ClientStalled, so a reader that stopped reading holds its buffers and its
    blob for that long at most."""

    def __init__(self, app: Any, stall_timeout: float = 30.0) -> None:
        self.app = app
        self.stall_timeout = stall_timeout

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            sender = ZeroCopySender.for_asgi(scope, send, self.stall_timeout)
            if sender is not None:
                extensions = scope.get("extensions") or {}
                extensions[EXTENSION] = sender
                scope["extensions"] = extensions
            send = _send_with_stall_timeout(send, self.stall_timeout)
        await self.app(scope, receive, send)


def _send_with_stall_timeout(send: Any, stall_timeout: float) -> Any:
    transport = getattr(getattr(send, "__self__", None), "transport", None)

    async def timed(message: MutableMapping[str, Any]) -> None:
        if message.get("type") != "http.response.body" or not message.get("body"):
            await send(message)
            return
        pending = asyncio.ensure_future(send(message))
        waited, last = 0.0, _buffered(transport)
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=_POLL_SLICE_MS / 1000)
                if done:
                    pending.result()
                    return
                now = _buffered(transport)
                waited = 0.0 if now is not None and last is not None and now < last else waited + _POLL_SLICE_MS / 1000
                last = now
                if waited >= stall_timeout:
                    metrics.stalled_clients.add(1, {"path": "copy"})
                    raise ClientStalled(errno.ETIMEDOUT, "client read nothing for the stall timeout")
        finally:
            if not pending.done():
                pending.cancel()

    return timed


def _buffered(transport: Any) -> int | None:
    try:
        return int(transport.get_write_buffer_size()) if transport is not None else None
    except (AttributeError, RuntimeError):
        return None


def sender_of(scope: MutableMapping[str, Any]) -> ZeroCopySender | None:
    extensions = scope.get("extensions") or {}
    sender = extensions.get(EXTENSION)
    return sender if isinstance(sender, ZeroCopySender) else None


def read_segment(segment: FileSegment) -> bytes:
    """The copying path: the segment's bytes (on a worker thread)."""
    return os.pread(segment.fd, segment.count, segment.offset)


_COPY_CHUNK = 4 * 1024 * 1024  # where sendfile cannot: 4 MiB reads (measured best, benchmarks.md)


class ShortRead(OSError):
    """The file ended before the segment did."""


async def segment_chunks(
    segment: FileSegment, chunk_size: int, executor: Executor | None = None
) -> AsyncIterator[bytes]:
    """The copying path: a segment's bytes in `chunk_size` reads on worker threads, the next read
    overlapping whatever the consumer does with this one. Raises ShortRead if the file ends early."""
    loop = asyncio.get_running_loop()
    offset, stop = segment.offset, segment.offset + segment.count

    def read_at(position: int) -> asyncio.Future[bytes] | None:
        if position >= stop:
            return None
        part = FileSegment(segment.fd, position, min(chunk_size, stop - position))
        return loop.run_in_executor(executor, read_segment, part)

    ahead = read_at(offset)
    while ahead is not None:
        data = await ahead
        if not data:
            raise ShortRead(errno.EIO, "file ended before the segment did")
        segment.check()
        offset += len(data)
        ahead = read_at(offset)
        yield data


async def push_segment(segment: LiveSegment, sender: ZeroCopySender | None) -> int:
    """Bytes of a read-along segment pushed to the client: none where only copying is possible."""
    if sender is None:
        segment.decline()
        return 0
    return await sender.push(segment)


async def send_segment(segment: FileSegment, sender: ZeroCopySender | None, send: Any) -> int:
    """Sends one segment as body bytes (more to follow): zero-copy when `sender` can, else by
    reading it in 4 MiB chunks."""
    if sender is not None and await sender.send(segment):
        return segment.count
    async for data in segment_chunks(segment, _COPY_CHUNK):
        await send({"type": "http.response.body", "body": data, "more_body": True})
        metrics.copied_bytes.add(len(data))
    return segment.count
