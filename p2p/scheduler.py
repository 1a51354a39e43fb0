"""Which piece to ask which peer for next: a pure function, shared by the downloader and the
discrete-event simulation in bench/, so the simulation measures the real policy.

In-order window: the fill streams to clients, so only the next `window` pieces are wanted.
Within the window the rarest pieces go first (fewest holders), each to the least busy holder
the tracker ranked highest, and no peer gets more than `per_peer` requests at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def choose_requests(
    wanted: Sequence[int],
    holders: Mapping[int, Sequence[str]],
    busy: Mapping[str, int],
    per_peer: int = 2,
) -> list[tuple[int, str]]:
    """(piece, peer) pairs to request now. `holders[i]` lists peers for piece i, best first."""
    load = dict(busy)
    chosen: list[tuple[int, str]] = []
    for index in sorted(wanted, key=lambda i: (len(holders.get(i, ())) == 0, len(holders.get(i, ())), i)):
        candidates = [p for p in holders.get(index, ()) if load.get(p, 0) < per_peer]
        if not candidates:
            continue
        peer = min(candidates, key=lambda p: load.get(p, 0))  # min keeps the tracker's order on ties
        load[peer] = load.get(peer, 0) + 1
        chosen.append((index, peer))
    return chosen
