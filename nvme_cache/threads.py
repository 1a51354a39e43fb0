"""Worker threads that carry their names into the kernel.

Python 3.11 names threads only for itself: `top -H`, `perf report --sort comm` and
`/proc/PID/task/*/comm` would show every receiving, hashing and sending thread as the process.
Each thread here sets its kernel name (15 bytes, `prctl(PR_SET_NAME)`) when it starts, so an
operator and `bench/datapath.py` can tell where a node's CPU goes.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from nvme_cache.libc import LIBC

_PR_SET_NAME = 15
_KERNEL_NAME_BYTES = 15  # TASK_COMM_LEN less the terminating NUL

_prctl: Callable[..., int] | None = getattr(LIBC, "prctl", None)  # a libc without it: Python's names only


def name_native_thread(name: str | None = None) -> None:
    """Give the calling thread `name` (default: its Python name) in the kernel; a no-op off Linux."""
    if _prctl is None:
        return
    encoded = (name or threading.current_thread().name).encode("utf-8", "replace")[:_KERNEL_NAME_BYTES]
    _prctl(_PR_SET_NAME, ctypes.c_char_p(encoded), 0, 0, 0)


def worker_pool(prefix: str, max_workers: int) -> ThreadPoolExecutor:
    """A thread pool whose threads are `prefix_N` in Python and in the kernel."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=prefix, initializer=name_native_thread)


def start_named_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread that is `name` in Python and in the kernel."""

    def run() -> None:
        name_native_thread(name)
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
