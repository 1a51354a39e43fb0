"""oci.ranges: Range requests (the mapping to 416 is tested in tests/registry_mirror/test_paths.py)
and Content-Range answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci import ByteRange, ContentRange, UnsatisfiableRange, parse_content_range, parse_range


def test_unsatisfiable_range_carries_the_size() -> None:
    with pytest.raises(UnsatisfiableRange) as caught:
        parse_range("bytes=10-", 10)
    assert caught.value.size == 10
    assert parse_range("bytes=2-4", None) == ByteRange(2, 4)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 0-9/10", ContentRange(0, 9, 10)),
        ("bytes 5-5/*", ContentRange(5, 5, None)),
        (" bytes 1-2/3 ", ContentRange(1, 2, 3)),
        (None, None),
        ("", None),
        ("bytes 5-4/10", None),  # backwards
        ("bytes 0-10/10", None),  # past the size it names
        ("bytes */10", None),  # a 416's, not a 206's
        ("bytes 0-9/10, 12-13/20", None),
        ("items 0-9/10", None),
        ("bytes -1-9/10", None),
    ],
)
def test_parse_content_range(header: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(header) == expected


def test_content_range_length() -> None:
    assert ContentRange(2, 5, None).length == 4


@given(st.integers(0, 2**63), st.integers(0, 2**63), st.one_of(st.none(), st.integers(1, 2**64)))
def test_content_range_round_trips_what_byte_range_writes(start: int, end: int, size: int | None) -> None:
    if end < start or (size is not None and end >= size):
        assert parse_content_range(ByteRange(start, end).content_range(size)) is None
    else:
        assert parse_content_range(ByteRange(start, end).content_range(size)) == ContentRange(start, end, size)
