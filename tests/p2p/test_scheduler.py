from __future__ import annotations

import hashlib

import blake3

from p2p.pieces import PieceHasher, matches, piece_bounds, piece_count, piece_hash_state, pieces_within
from p2p.scheduler import choose_requests
from p2p.swarm import _runs


def test_rarest_first_within_the_window_and_per_peer_cap() -> None:
    holders = {0: ["a", "b", "c"], 1: ["a"], 2: ["a", "b"], 3: []}
    chosen = choose_requests([0, 1, 2, 3], holders, busy={})
    assert chosen[0] == (1, "a")  # the rarest piece first
    assert (3, "a") not in chosen and all(index != 3 for index, _ in chosen)  # nobody has 3
    assert sum(1 for _, peer in chosen if peer == "a") <= 2


def test_busy_peers_are_skipped() -> None:
    chosen = choose_requests([0, 1], {0: ["a", "b"], 1: ["a", "b"]}, busy={"a": 2})
    assert chosen == [(0, "b"), (1, "b")]


def test_piece_math() -> None:
    assert piece_count(10, 4) == 3 and piece_count(0, 4) == 0
    assert piece_bounds(2, 10, 4) == (8, 10)
    assert pieces_within(7, 10, 4) == 1 and pieces_within(10, 10, 4) == 3


def test_consecutive_pieces_for_one_peer_go_in_one_run() -> None:
    chosen = [(3, "a"), (0, "a"), (1, "a"), (2, "b"), (4, "a"), (5, "a"), (6, "a")]
    assert _runs(chosen, 4) == [("a", [0, 1]), ("a", [3, 4, 5, 6]), ("b", [2])]
    assert _runs([(i, "a") for i in range(6)], 4) == [("a", [0, 1, 2, 3]), ("a", [4, 5])]


def test_piece_hashes_name_their_algorithm_and_older_sha256_ones_still_verify() -> None:
    data = b"piece bytes"
    ours = piece_hash_state()
    ours.update(data)
    assert matches(ours, "blake3:" + blake3.blake3(data).hexdigest())
    legacy = hashlib.sha256(data).hexdigest()
    state = piece_hash_state(legacy)
    state.update(data)
    assert matches(state, legacy)
    wrong = piece_hash_state(legacy)
    wrong.update(data + b"!")
    assert not matches(wrong, legacy)
    assert not matches(ours, blake3.blake3(data).hexdigest())  # a bare hex is a sha256, not ours


def test_piece_hasher_matches_blake3_for_any_chunking() -> None:
    import random

    data = random.Random(5).randbytes(10_000)
    for chunk in (1, 7, 999, 4096, 10_000):
        for start in (0, 4096):
            seen: dict[int, str] = {}
            hasher = PieceHasher(len(data), 4096, start, seen.__setitem__)
            for offset in range(0, len(data), chunk):
                hasher(offset, data[offset : offset + chunk])
            expected = {
                i: "blake3:" + blake3.blake3(data[i * 4096 : (i + 1) * 4096]).hexdigest()
                for i in range(start // 4096, 3)
            }
            assert seen == expected
