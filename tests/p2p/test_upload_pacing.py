"""A capped upload in slices: together they are exactly the item, in order, none larger than an
eighth of a second of the cap (within the 64 KiB..4 MiB bounds); uncapped, the item goes as it is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from http_limits.ratelimit import TokenBucket
from nvme_cache import FileSegment
from p2p.peer_server import _paced

KiB, MiB = 1024, 1024 * 1024


@given(
    rate=st.integers(min_value=1, max_value=200 * MiB),
    offset=st.integers(min_value=0, max_value=2**40),
    count=st.integers(min_value=0, max_value=64 * MiB),
)
def test_file_segment_slices_cover_it_in_order(rate: int, offset: int, count: int) -> None:
    slices = list(_paced(FileSegment(7, offset, count), TokenBucket(rate, rate)))
    position = offset
    for part in slices:
        assert isinstance(part, FileSegment) and part.fd == 7
        assert part.offset == position and 0 < part.count <= max(64 * KiB, min(4 * MiB, rate // 8))
        position += part.count
    assert position == offset + count


@given(rate=st.integers(min_value=1, max_value=64 * MiB), data=st.binary(max_size=300 * KiB))
def test_bytes_slices_join_to_the_item(rate: int, data: bytes) -> None:
    slices = list(_paced(data, TokenBucket(rate, rate)))
    assert b"".join(bytes(part) for part in slices if isinstance(part, bytes)) == data
    assert all(isinstance(part, bytes) and 0 < len(part) <= max(64 * KiB, rate // 8) for part in slices)


def test_uncapped_items_go_whole() -> None:
    segment = FileSegment(3, 0, 256 * MiB)
    assert list(_paced(segment, None)) == [segment]
    assert list(_paced(b"abc", None)) == [b"abc"]
