"""RFC 9110 14.1.1: "If the selected representation has zero length, the only satisfiable form of
range-spec in a GET request is a suffix-range with a non-zero suffix-length." `bytes=-N` (N > 0) on
an empty blob is served as the whole (empty) blob; every other range of it stays a 416."""

from __future__ import annotations

import pytest

from oci import UnsatisfiableRange, parse_range
from registry_mirror.api._paths import parse_range as api_parse_range


@pytest.mark.parametrize("header", ["bytes=-1", "bytes=-5", "bytes=-99999999"])
def test_nonzero_suffix_of_an_empty_blob_is_satisfiable(header: str) -> None:
    assert parse_range(header, 0) is None  # served as the whole (empty) blob, 200
    assert api_parse_range(header, 0) is None


@pytest.mark.parametrize("header", ["bytes=-0", "bytes=0-", "bytes=0-0"])
def test_other_ranges_of_an_empty_blob_stay_unsatisfiable(header: str) -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_range(header, 0)
