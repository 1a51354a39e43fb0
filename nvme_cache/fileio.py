"""Writes into a fill's temp file at an offset, with O_DIRECT where it is asked for and can.

A buffered write copies every byte into the page cache, and on a disk-backed cache a fill of a
100 GB model then pushes the node's whole page cache out for bytes that nobody reads now (a
prefetch, a catalog pin, a fill whose client left). With `O_DIRECT` (`cache.direct_writes`, off
by default) the device takes the bytes from our own buffer instead. Which costs less CPU depends
on how dear a new page-cache page is: on this VM direct won while the host was taking memory
back and lost (1.19x) once it was not (docs/architecture.md, "Measured choices"). Bytes a reader of
the file waits for are always written buffered (`around_cache=False`): that reader then gets them
from memory, not from a second trip to the disk. (A client reading along takes its bytes from the
receive buffer, nvme_cache/readalong.py: those need no page-cache copy.)

`O_DIRECT` needs the buffer's address, the offset and the length to be multiples of the block
size, so `DirectWriter` sends what is aligned (our receive buffers are page-aligned mappings and
chunks start at piece boundaries) through its `O_DIRECT` descriptor and the rest (a blob's last
chunk, bytes objects from a stream) through the buffered one. Both reach the same file; the
kernel keeps the two coherent for ranges that are never read before they are written, which
is how fills use them (readers ask only for present ranges, with read-ahead off:
`no_read_ahead`).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import threading

from nvme_cache import metrics
from nvme_cache.libc import LIBC

DIRECT_ALIGNMENT = 4096  # the largest logical block size of NVMe and ext4/xfs in use
_COUNT_EVERY = 64 * 1024 * 1024  # direct bytes reach the counter this often (an add per chunk costs)


def write_at(fd: int, data: memoryview | bytes | bytearray, offset: int) -> None:
    """All of `data` at `offset`: `pwrite` may write less than asked (a signal, a full disk's last
    blocks), and the rest must follow or fail. OSError as it came (ENOSPC: the caller decides)."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)


def aligned_buffer(size: int) -> memoryview:
    """A writable buffer whose address is page-aligned (an anonymous mapping), so a full chunk
    received into it can be written with O_DIRECT."""
    return memoryview(mmap.mmap(-1, size))


def _address(view: memoryview) -> int | None:
    if view.readonly:
        return None  # bytes from a stream: never aligned, and ctypes needs a writable buffer
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def _is_aligned(view: memoryview, offset: int) -> bool:
    if offset % DIRECT_ALIGNMENT or len(view) % DIRECT_ALIGNMENT or not len(view):
        return False
    address = _address(view)
    return address is not None and address % DIRECT_ALIGNMENT == 0


class DirectWriter:
    """Writes into one open file at offsets: block-aligned writes through a second descriptor
    opened with O_DIRECT (when `direct` and a disk's filesystem takes it), the rest buffered. Safe to
    share between threads writing different ranges.

    It owns only the O_DIRECT descriptor (`close`); `fd` stays the caller's."""

    def __init__(self, fd: int, direct: bool = True) -> None:
        self.fd = fd
        self._direct_fd: int | None = None
        if direct and not _in_memory(fd):
            try:
                # A new open file description of the same file: O_DIRECT is per description.
                self._direct_fd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError:  # no /proc, or a filesystem without O_DIRECT: every write buffered
                self._direct_fd = None
        self._use_direct = self._direct_fd is not None
        self._uncounted = 0  # direct bytes not yet added to the counter (under _count_lock)
        self._count_lock = threading.Lock()

    @property
    def direct(self) -> bool:
        """Aligned writes still go around the page cache."""
        return self._use_direct

    def write(self, data: memoryview | bytes | bytearray, offset: int, around_cache: bool = True) -> None:
        """All of `data` at `offset`; OSError as it came (ENOSPC: the caller decides).
        `around_cache=False`: buffered even if aligned (a reader is about to read these bytes)."""
        view = memoryview(data)
        if around_cache and self._use_direct and self._direct_fd is not None and _is_aligned(view, offset):
            try:
                write_at(self._direct_fd, view, offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # A device whose blocks are larger than we align to: buffered from now on (the
                # descriptor stays open until `close`, another thread may be writing through it).
                self._use_direct = False
            else:
                self._count(len(view))
                return
        write_at(self.fd, view, offset)

    def _count(self, written: int) -> None:
        """Adds `written` direct bytes; the counter hears of them every _COUNT_EVERY and at close (0)."""
        with self._count_lock:
            self._uncounted += written
            if written and self._uncounted < _COUNT_EVERY:
                return
            flush, self._uncounted = self._uncounted, 0
        if flush:
            metrics.direct_bytes.add(flush)

    def close(self) -> None:
        self._count(0)
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        self._use_direct = False


def no_read_ahead(fd: int) -> None:
    """Read-ahead off for a reader of a temp file that is being written with O_DIRECT: pages
    read ahead of the present bytes would hold the allocation's zeros, be thrown away by the
    direct write of those bytes, and cost a disk read each time. `read_present` reads instead."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)


def read_present(fd: int, offset: int, count: int) -> None:
    """Start reading bytes that are present (written) into the page cache in one go, before a
    reader of such a temp file sends them: without read-ahead, `sendfile` would read them from
    the disk 64 KiB at a time, waiting for each."""
    os.posix_fadvise(fd, offset, count, os.POSIX_FADV_WILLNEED)


_TMPFS_MAGIC = 0x01021994
_RAMFS_MAGIC = 0x858458F6


def _in_memory(fd: int) -> bool:
    """The file lives in the page cache itself (tmpfs, ramfs): O_DIRECT saves nothing there."""
    fstatfs = getattr(LIBC, "fstatfs", None)
    if fstatfs is None:
        return False
    buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type (a long) comes first
    if fstatfs(fd, buffer) != 0:
        return False
    kind = struct.unpack_from("l", buffer.raw)[0] & 0xFFFFFFFF
    return kind in (_TMPFS_MAGIC, _RAMFS_MAGIC)
