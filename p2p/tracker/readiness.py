"""Rollout readiness: the share of live peers, overall and per zone, that hold every blob of a
catalog (or of an explicit list of digests) complete and verified.

Which blobs a catalog (name, serial) has is told to the tracker by the mirrors that activated it
(each verified the catalog's signature); the tracker keeps every distinct list offered with the
live peers that offered it and uses the one most of them agree on, so one peer offering a wrong
list cannot change the answer for the others. The answer is about holdings, not bytes: the bytes
are verified by every node that fetches them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from p2p.tracker.models import PeerInfo


@dataclass(frozen=True)
class CatalogList:
    """One list of digests offered for a catalog (name, serial), and the peers that offered it."""

    serial: int
    digests: tuple[str, ...]
    voters: frozenset[str]


def list_id(digests: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:32]


def agreed_list(lists: Iterable[CatalogList], live: set[str]) -> CatalogList | None:
    """The list most live peers offered (ties: the longer list, then the list id)."""
    counted = [(len(item.voters & live), item) for item in lists]
    counted = [(votes, item) for votes, item in counted if votes > 0]
    if not counted:
        return None
    return max(counted, key=lambda pair: (pair[0], len(pair[1].digests), list_id(pair[1].digests)))[1]


@dataclass(frozen=True)
class Share:
    live: int
    ready: int

    @property
    def share(self) -> float:
        return self.ready / self.live if self.live else 0.0

    def to_wire(self) -> dict[str, Any]:
        return {"live": self.live, "ready": self.ready, "share": round(self.share, 4)}


@dataclass(frozen=True)
class Readiness:
    digests: int
    overall: Share
    zones: Mapping[str, Share] = field(default_factory=dict)
    ready_peers: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "digests": self.digests,
            **self.overall.to_wire(),
            "zones": {zone: share.to_wire() for zone, share in sorted(self.zones.items())},
            "ready_peers": list(self.ready_peers),
        }


def readiness(
    digests: Sequence[str], live_peers: Sequence[PeerInfo], complete_holders: Mapping[str, set[str]]
) -> Readiness:
    """`complete_holders`: digest -> ids of live peers holding it whole."""
    ready_ids: set[str] = {peer.id for peer in live_peers}
    for digest in digests:
        ready_ids &= complete_holders.get(digest, set())
    zones: dict[str, list[int]] = {}
    for peer in live_peers:
        counts = zones.setdefault(peer.zone, [0, 0])
        counts[0] += 1
        counts[1] += peer.id in ready_ids
    return Readiness(
        len(digests),
        Share(len(live_peers), len(ready_ids)),
        {zone: Share(live, ready) for zone, (live, ready) in zones.items()},
        tuple(sorted(ready_ids)),
    )


def latest_agreed(lists: Sequence[CatalogList], live: set[str], serial: int | None) -> CatalogList | None:
    """The agreed list of `serial`, or of the newest serial any live peer offered."""
    if serial is None:
        offered = [item.serial for item in lists if item.voters & live]
        if not offered:
            return None
        serial = max(offered)
    return agreed_list((item for item in lists if item.serial == serial), live)
