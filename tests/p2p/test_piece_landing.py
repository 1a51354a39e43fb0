"""Pieces landing in the fill's file from the receiving thread (p2p.piece_client)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from p2p.errors import PieceError
from p2p.piece_client import Abort, DiskFull, Landing
from tests.nvme_cache.test_disk_full import small_tmpfs  # noqa: F401 - the fixture


def _landing(path: Path) -> Landing:
    return Landing(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), threading.Lock())


def test_a_run_given_up_writes_nothing_more(tmp_path: Path) -> None:
    """Once abort() has returned, the thread's next write fails and the file is untouched: a
    source that took those bytes over is never overwritten by a straggler."""
    landing = _landing(tmp_path / "fill")
    abort = Abort()
    abort.write(landing, memoryview(b"before"), 0)
    abort()
    with pytest.raises(PieceError):
        abort.write(landing, memoryview(b"AFTER!"), 0)
    os.close(landing.fd)
    assert (tmp_path / "fill").read_bytes() == b"before"


def test_each_run_writes_through_its_own_descriptor(tmp_path: Path) -> None:
    """Closing the stream's descriptor (the fill ended) never leaves a run writing through a
    number that may belong to another file by then."""
    stream = _landing(tmp_path / "fill")
    run = stream.for_run()
    assert run.fd != stream.fd and run.lock is stream.lock
    os.close(stream.fd)
    Abort().write(run, memoryview(b"still ours"), 0)
    os.close(run.fd)
    assert (tmp_path / "fill").read_bytes() == b"still ours"


def test_no_room_to_land_is_disk_full_not_a_peer_error(small_tmpfs: Path) -> None:  # noqa: F811
    landing = _landing(small_tmpfs / "fill")
    piece = memoryview(bytes(1024 * 1024))
    with pytest.raises(DiskFull):
        for index in range(16):  # 16 MiB into a 6 MiB tmpfs
            Abort().write(landing, piece, index * len(piece))
    os.close(landing.fd)
