"""zstd "patch-from" deltas: the old blob is a referenced prefix, so the delta holds only what changed.

Memory: pyzstd copies the base into one in-memory `bytes` (from an mmap, so the file is never
read into a second buffer); zstd then references that copy without copying it again. Compressing
also keeps up to one window of the new blob plus match tables; decompressing keeps the base plus
the rebuilt output window (about base + new size at worst). See docs/catalog.md for measurements.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyzstd
from pyzstd import CParameter, DParameter

from catalog.errors import DeltaMismatch
from catalog.metrics import delta_rebuilds, delta_rebuilt_bytes
from nvme_cache.threads import start_named_thread

CHUNK = 1024 * 1024
ALGORITHM = "zstd-patch-from"
_MIN_PREFIX = 8
_MAX_WINDOW_LOG = 31  # zstd's limit on 64-bit; blobs above ~2 GiB total get no full-range matches


@dataclass(frozen=True)
class DeltaInfo:
    digest: str  # sha256 of the delta file itself
    size: int
    source_size: int  # size of the new (target) blob
    algorithm: str = ALGORITHM

    @property
    def ratio(self) -> float:
        return self.size / self.source_size if self.source_size else 1.0


def _window_log(base_size: int, target_size: int) -> int:
    # A match may reach back over the whole prefix: the window must span base + target.
    return min(_MAX_WINDOW_LOG, max(10, (base_size + target_size - 1).bit_length()))


def _load_prefix(base_path: Path) -> pyzstd.ZstdDict:
    with open(base_path, "rb") as f:
        if os.fstat(f.fileno()).st_size < _MIN_PREFIX:
            # pyzstd refuses tiny prefixes; both sides pad the same way, so they still agree.
            return pyzstd.ZstdDict(f.read().ljust(_MIN_PREFIX, b"\0"), is_raw=True)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return pyzstd.ZstdDict(mapped, is_raw=True)


def make_delta(
    old_path: Path,
    new_path: Path,
    out_path: Path,
    min_savings: float = 0.0,
    level: int = 3,
) -> DeltaInfo | None:
    """Write a delta turning `old_path` into `new_path`.

    Returns None (and leaves no file) when the delta would not save at least `min_savings`
    of the new blob's size, e.g. 0.5 keeps only deltas at most half the blob's size.
    """
    old_size, new_size = os.path.getsize(old_path), os.path.getsize(new_path)
    prefix = _load_prefix(old_path)
    options: dict[int, int] = {
        CParameter.compressionLevel: level,
        CParameter.windowLog: _window_log(old_size, new_size),
        CParameter.enableLongDistanceMatching: 1,
        CParameter.checksumFlag: 1,
    }
    compressor = pyzstd.ZstdCompressor(options, zstd_dict=prefix.as_prefix)
    digest, size = hashlib.sha256(), 0
    tmp = _temp_path(out_path)
    try:
        with open(new_path, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                size += _write(out, digest, compressor.compress(chunk))
            size += _write(out, digest, compressor.flush())
        if new_size and size > new_size * (1.0 - min_savings):
            tmp.unlink()
            return None
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return DeltaInfo(digest=f"sha256:{digest.hexdigest()}", size=size, source_size=new_size)


def apply_delta(
    base_path: Path,
    delta_path: Path,
    out_path: Path,
    expected_digest: str,
    expected_size: int,
    *,
    durable: bool = True,
) -> None:
    """Rebuild a blob from `base_path` + `delta_path` into `out_path`, atomically.

    The output is hashed as it is written; only a result matching `expected_digest` and
    `expected_size` is renamed into place, otherwise DeltaMismatch and nothing is left.
    Decompression and hash+write run on two threads (both release the GIL), so the rebuild
    costs about the slower of the two rather than their sum. `durable=False` skips the fsync
    for an output that is only a fill's source (the cache fsyncs its own copy).
    """
    algo, _, hexdigest = expected_digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64:
        raise DeltaMismatch(f"unsupported expected digest {expected_digest!r}")
    prefix = _load_prefix(base_path)
    decompressor = pyzstd.ZstdDecompressor(
        zstd_dict=prefix.as_prefix, option={DParameter.windowLogMax: _MAX_WINDOW_LOG}
    )
    tmp = _temp_path(out_path)
    try:
        with open(delta_path, "rb") as src, open(tmp, "wb", buffering=0) as out:
            writer = _HashingWriter(out)
            try:
                size = _decompress_into(decompressor, src, writer, expected_size)
            finally:
                digest = writer.close()
            if durable:
                os.fsync(out.fileno())
        if size != expected_size or digest != hexdigest:
            raise DeltaMismatch(
                f"rebuilt blob is sha256:{digest} ({size} bytes), expected {expected_digest} ({expected_size})"
            )
        os.replace(tmp, out_path)
    except pyzstd.ZstdError as exc:
        tmp.unlink(missing_ok=True)
        delta_rebuilds.add(1, {"result": "mismatch"})
        raise DeltaMismatch(f"delta does not decode against this base: {exc}") from None
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        delta_rebuilds.add(1, {"result": "mismatch" if isinstance(exc, DeltaMismatch) else "error"})
        raise
    delta_rebuilds.add(1, {"result": "ok"})
    delta_rebuilt_bytes.add(size)


def _decompress_into(
    decompressor: pyzstd.ZstdDecompressor, src: BinaryIO, writer: _HashingWriter, expected_size: int
) -> int:
    # Output is produced 1 MiB at a time so a tiny, highly compressed delta cannot balloon memory.
    size = 0
    while not decompressor.eof and (chunk := src.read(CHUNK)):
        data = decompressor.decompress(chunk, CHUNK)
        while True:
            size += len(data)
            if size > expected_size:
                raise DeltaMismatch("rebuilt blob is larger than expected")
            writer.put(data)
            if decompressor.eof or decompressor.needs_input:
                break
            data = decompressor.decompress(b"", CHUNK)
    if not decompressor.eof:
        raise DeltaMismatch("delta is truncated")
    return size


class _HashingWriter:
    """sha256 + write on a thread of its own, fed through a short queue (bounded memory)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = start_named_thread(self._run, "delta-writer")

    def put(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if data:
            self._queue.put(data)

    def close(self) -> str:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._digest.update(data)
                    view = memoryview(data)
                    while view:
                        view = view[self._out.write(view) :]
                except BaseException as exc:  # reported to the decompressing thread
                    self._error = exc


def _write(out: BinaryIO, digest: hashlib._Hash, data: bytes) -> int:
    if data:
        digest.update(data)
        out.write(data)
    return len(data)


def _temp_path(final: Path) -> Path:
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
