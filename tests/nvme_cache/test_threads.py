"""Worker threads carry their names into the kernel (`top -H`, perf, /proc/PID/task/*/comm)."""

from __future__ import annotations

import threading
from pathlib import Path

from nvme_cache.threads import name_native_thread, start_named_thread, worker_pool


def _kernel_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_pool_thread_is_named_in_the_kernel() -> None:
    pool = worker_pool("unit-pool", 2)
    try:
        native_id = pool.submit(threading.get_native_id).result(timeout=10)
        assert _kernel_name(native_id) == "unit-pool_0"
    finally:
        pool.shutdown()


def test_a_started_thread_is_named_and_long_names_are_cut_to_fifteen_bytes() -> None:
    seen: list[str] = []
    thread = start_named_thread(lambda: seen.append(_kernel_name(threading.get_native_id())), "hash 0123456789abcdef")
    thread.join(timeout=10)
    assert seen == ["hash 0123456789"]
    assert thread.name == "hash 0123456789abcdef"  # Python keeps the whole name


def test_naming_the_calling_thread_leaves_other_threads_alone() -> None:
    main_name = _kernel_name(threading.get_native_id())
    done = threading.Event()

    def rename() -> None:
        name_native_thread("renamed")
        done.set()

    threading.Thread(target=rename).start()
    assert done.wait(10)
    assert _kernel_name(threading.get_native_id()) == main_name
