from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.tracker import models
from p2p.tracker.models import BlobState, PeerHolding, PeerInfo


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.frozensets(st.integers(0, n - 1)))))
def test_bitmap_round_trips_through_base64(case: tuple[int, frozenset[int]]) -> None:
    count, indices = case
    bitmap = models.bitmap_from_indices(indices, count)
    decoded = models.decode_bitmap(models.encode_bitmap(bitmap))
    assert len(decoded) == (count + 7) // 8
    assert set(models.bitmap_indices(decoded)) == indices
    assert models.bitmap_count(decoded) == len(indices)


def test_bitmap_is_msb_first() -> None:
    assert models.bitmap_from_indices([0, 9], 10) == bytes([0x80, 0x40])


def test_bitmap_refuses_index_past_the_end() -> None:
    with pytest.raises(ValueError):
        models.bitmap_from_indices([10], 10)


def test_complete_blob_state_covers_every_piece() -> None:
    blob = BlobState("sha256:" + "a" * 64, size=10 * 1024 * 1024, piece_size=4 * 1024 * 1024, complete=True)
    assert blob.piece_count == 3
    holding = PeerHolding(PeerInfo("p", "http://127.0.0.1:1"), blob.size, blob.piece_size, True, b"")
    assert PeerHolding.from_wire(holding.to_wire()).pieces_held == 3
