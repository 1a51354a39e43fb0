"""The order in which a lookup offers peers: same zone, then least loaded, then most pieces."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable

from p2p.tracker.models import PeerHolding


def rank_peers(
    holdings: Iterable[PeerHolding], zone: str, exclude: Collection[str], limit: int
) -> list[PeerHolding]:
    candidates = [h for h in holdings if h.peer.id not in exclude and h.pieces_held > 0]
    # The random last key spreads equally good peers across requesters instead of piling on one.
    candidates.sort(
        key=lambda h: (bool(zone) and h.peer.zone != zone, h.peer.load, -h.pieces_held, random.random())
    )
    return candidates[:limit]
