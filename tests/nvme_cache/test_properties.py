"""Property tests: any chunking, any set of concurrent readers and ranges, any failure point."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvme_cache import BlobStore, Fill, FillFailed
from tests.nvme_cache.sources import BytesSource, digest_of

ranges = st.tuples(st.integers(0, 5000), st.one_of(st.none(), st.integers(0, 5000)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(min_size=1, max_size=5000),
    chunk=st.integers(1, 700),
    store_chunk=st.integers(1, 900),
    wanted=st.lists(ranges, min_size=1, max_size=6),
    corrupt=st.booleans(),
    report_size=st.booleans(),
)
def test_readers_see_exact_bytes_or_an_error(
    data: bytes, chunk: int, store_chunk: int, wanted: list[tuple[int, int | None]], corrupt: bool, report_size: bool
) -> None:
    asyncio.run(_scenario(data, chunk, store_chunk, wanted, corrupt, report_size))


async def _scenario(
    data: bytes, chunk: int, store_chunk: int, wanted: list[tuple[int, int | None]], corrupt: bool, report_size: bool
) -> None:
    with tempfile.TemporaryDirectory() as root:
        store = BlobStore(Path(root), max_size=1 << 30, chunk_size=store_chunk)
        store.open()
        source = BytesSource(data, chunk=chunk, corrupt_last_byte=corrupt, report_size=report_size)
        digest = digest_of(data)
        valid = [
            (min(s, len(data) - 1), e if e is None else max(min(e, len(data)), min(s, len(data) - 1)))
            for s, e in wanted
        ]
        handles = [store.get(digest, source) for _ in valid]

        async def read(handle: object, start: int, end: int | None) -> bytes | BaseException:
            assert isinstance(handle, Fill)
            parts: list[bytes] = []
            try:
                async for part in handle.read(start, end):
                    parts.append(part)
            except FillFailed as exc:
                return exc
            return b"".join(parts)

        results = await asyncio.gather(*(read(h, s, e) for h, (s, e) in zip(handles, valid, strict=True)))
        assert source.opens == 1
        for (start, end), result in zip(valid, results, strict=True):
            if corrupt:
                assert isinstance(result, FillFailed)
            else:
                assert result == data[start:end]
        fill = handles[0]
        assert isinstance(fill, Fill)
        try:
            await fill.wait()
        except FillFailed:
            pass
        assert (store.stat(digest) is not None) == (not corrupt)
        store.close()
