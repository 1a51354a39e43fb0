"""A discrete-event simulation of the P2P swarm at 10, 100 and 1,000 nodes: how the completion time
of the last node, the origin bytes and the tracker load grow with N.

The policy is the product's own: `p2p.scheduler.choose_requests` picks every piece request and
`p2p.pieces` cuts the blob; the loop around it follows `p2p/swarm.py` (open: lookup, lease or
wait; download: in-order window, refresh holders every poll interval, stall -> lease or origin) and
`p2p/node.py` (announce the verified prefix every announce interval, heartbeat). The tracker ranks
like `p2p/tracker/ranking.py` (least load, most pieces, random ties, 20 per lookup) from what peers
last announced. Simplifications are listed in docs/p2p.md ("Scaling").

    .venv/bin/python bench/p2p_sim.py [--nodes 10,100,1000] [--size-mib 512] [--seed 1]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import MiB, Table, write_result  # noqa: E402

from p2p.pieces import piece_bounds, piece_count  # noqa: E402
from p2p.scheduler import choose_requests  # noqa: E402

ORIGIN = -1  # the uploader id of the origin


@dataclass(frozen=True)
class SimConfig:
    nodes: int
    blob_size: int = 512 * MiB
    piece_size: int = 4 * MiB  # P2PConfig defaults below
    link_bytes_per_s: float = 1.25e9  # each node, up and down (10 Gbit/s)
    origin_bytes_per_s: float = 100e6  # the origin's egress, shared by every origin stream
    origin_first_byte_s: float = 0.05
    window: int = 4
    per_peer: int = 2
    max_uploads: int = 16
    poll_interval: float = 0.2
    announce_interval: float = 0.25
    heartbeat_interval: float = 10.0
    stall_timeout: float = 5.0
    lookup_limit: int = 20
    refused_backoff: float = 0.5  # what swarm.py rests a peer that answered 503/404
    start_spread_s: float = 0.05  # every node's client asks within this long of the first
    # The product's policy, or the changes proposed in docs/p2p.md ("Scaling"): lookups that put
    # holders of the asker's next piece first, in random order within a load level (no herding on
    # the peer with the most pieces); no seed lease once a complete copy is announced.
    policy: str = "product"  # or "proposed"
    seed: int = 1


@dataclass
class Transfer:
    tid: int
    src: int
    dst: int
    index: int
    remaining: float
    rate: float = 0.0
    stamp: float = 0.0
    version: int = 0


@dataclass
class NodeState:
    mode: str = "idle"  # idle, opening, peer, origin, done
    next_index: int = 0
    inflight: dict[int, Transfer] = field(default_factory=dict)
    ready: set[int] = field(default_factory=set)
    holdings: list[tuple[int, int]] = field(default_factory=list)  # (peer, pieces) best first
    last_refresh: float = -1.0
    last_progress: float = 0.0
    round_start_index: int = 0
    rounds: int = 0
    backoff: dict[int, float] = field(default_factory=dict)
    uploads: set[int] = field(default_factory=set)  # transfer ids
    downloads: set[int] = field(default_factory=set)
    announced: int = -1
    announced_complete: bool = False
    seeding: bool = False
    hashes_known: int = 0  # piece hashes this downloader fetched from the tracker so far
    opened_at: float = 0.0
    done_at: float | None = None


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.count = piece_count(config.blob_size, config.piece_size)
        self.now = 0.0
        self.queue: list[tuple[float, int, Callable[..., None], tuple[object, ...]]] = []
        self.seq = itertools.count()
        self.nodes = [NodeState() for _ in range(config.nodes)]
        self.transfers: dict[int, Transfer] = {}
        self.transfer_ids = itertools.count()
        self.origin_streams: set[int] = set()
        self.origin_bytes = 0
        # The tracker: what each peer last announced, ranked in buckets keyed (load, -pieces).
        self.tracked: dict[int, tuple[int, int]] = {}  # peer -> (load, pieces)
        self.buckets: dict[tuple[int, int], set[int]] = {}
        self.bucket_keys: list[tuple[int, int]] = []
        self.hashes_published = 0
        self.lease_holder: int | None = None
        self.requests: Counter[str] = Counter()
        self.requests_per_s: Counter[int] = Counter()
        self.unfinished = config.nodes
        self.complete_copies = 0
        self.refused = 0

    # -- the event queue ---------------------------------------------------------------------------
    def at(self, when: float, action: Callable[..., None], *args: object) -> None:
        heapq.heappush(self.queue, (when, next(self.seq), action, args))

    def run(self) -> dict[str, object]:
        for node in range(self.c.nodes):
            self.at(self.rng.uniform(0, self.c.start_spread_s), self.start, node)
        while self.queue and self.unfinished:
            self.now, _, action, args = heapq.heappop(self.queue)
            action(*args)
        return self.summary()

    # -- the tracker ---------------------------------------------------------------------------------
    def tracker_request(self, kind: str) -> None:
        self.requests[kind] += 1
        self.requests_per_s[int(self.now)] += 1

    def tracker_update(self, peer: int, load: int, pieces: int) -> None:
        old = self.tracked.get(peer)
        if old is not None:
            old_key = (old[0], -old[1])
            bucket = self.buckets[old_key]
            bucket.discard(peer)
            if not bucket:
                del self.buckets[old_key]
                self.bucket_keys.pop(bisect.bisect_left(self.bucket_keys, old_key))
        self.tracked[peer] = (load, pieces)
        key = (load, -pieces)
        if key not in self.buckets:
            self.buckets[key] = set()
            bisect.insort(self.bucket_keys, key)
        self.buckets[key].add(peer)

    def lookup(self, asker: int) -> list[tuple[int, int]]:
        """Ranked like rank_peers: least load, most pieces, random order among equals; no empty ones."""
        self.tracker_request("peers")
        if self.c.policy == "proposed":
            return self._lookup_useful_first(asker)
        found: list[tuple[int, int]] = []
        for key in self.bucket_keys:
            if key[1] == 0:
                continue
            members = [p for p in self.buckets[key] if p != asker]
            want = self.c.lookup_limit - len(found)
            chosen = self.rng.sample(members, min(want, len(members)))
            found += [(p, -key[1]) for p in chosen]
            if len(found) >= self.c.lookup_limit:
                break
        return found

    def _lookup_useful_first(self, asker: int) -> list[tuple[int, int]]:
        need = self.nodes[asker].next_index
        keys = [k for k in self.bucket_keys if k[1] != 0]
        found: list[tuple[int, int]] = []
        for group in ([k for k in keys if -k[1] > need], [k for k in keys if -k[1] <= need]):
            for _, same_load in itertools.groupby(group, key=lambda k: k[0]):
                members = [(p, -k[1]) for k in same_load for p in self.buckets[k] if p != asker]
                want = self.c.lookup_limit - len(found)
                found += self.rng.sample(members, min(want, len(members)))
                if len(found) >= self.c.lookup_limit:
                    return found
        return found

    def acquire_lease(self, node: int) -> bool:
        self.tracker_request("lease")
        if self.c.policy == "proposed" and self.complete_copies:
            return False  # someone holds the whole blob: fetch it from peers, not the origin
        if self.lease_holder is None or self.lease_holder == node:
            self.lease_holder = node
            return True
        return False

    # -- a node's fill: open ---------------------------------------------------------------------------
    def start(self, node: int) -> None:
        state = self.nodes[node]
        state.mode, state.opened_at = "opening", self.now
        self.at(self.now + self.c.announce_interval, self.announce_tick, node)
        self.at(self.now + self.c.heartbeat_interval, self.heartbeat_tick, node)
        self.open_poll(node)

    def open_poll(self, node: int) -> None:
        state = self.nodes[node]
        if self.lookup(node):
            self.begin_download(node)
        elif self.acquire_lease(node):
            state.seeding = True
            self.begin_origin(node)
            self.at(self.now + self.c.poll_interval, self.publish_tick, node)
        elif self.now - state.opened_at >= self.c.stall_timeout:
            self.begin_origin(node)
        else:
            self.at(self.now + self.c.poll_interval, self.open_poll, node)

    # -- downloading from peers -----------------------------------------------------------------------
    def begin_download(self, node: int) -> None:
        state = self.nodes[node]
        state.mode = "peer"
        state.last_progress = self.now
        state.round_start_index = state.next_index
        state.last_refresh = -1.0
        self.wake(node)
        self.at(self.now + self.c.poll_interval, self.poll_tick, node, state.rounds)

    def poll_tick(self, node: int, rounds: int) -> None:
        state = self.nodes[node]
        if state.mode != "peer" or state.rounds != rounds:
            return
        self.wake(node)
        if state.mode == "peer" and state.rounds == rounds:
            self.at(self.now + self.c.poll_interval, self.poll_tick, node, rounds)

    def wake(self, node: int) -> None:
        """One pass of swarm._download's loop: refresh, schedule, deliver in order, stall check."""
        state, c = self.nodes[node], self.c
        if self.now - state.last_refresh >= c.poll_interval:
            state.last_refresh = self.now
            state.holdings = self.lookup(node)
            window_end = min(self.count, state.next_index + c.window)
            if window_end > state.hashes_known:
                self.tracker_request("get_pieces")
                state.hashes_known = self.hashes_published
        self.schedule(node)
        while state.next_index in state.ready:
            state.ready.discard(state.next_index)
            state.next_index += 1
            state.last_progress = self.now
        if state.next_index >= self.count:
            self.finish(node)
        elif self.now - state.last_progress > c.stall_timeout:
            self.stalled(node)

    def schedule(self, node: int) -> None:
        state, c = self.nodes[node], self.c
        known = state.hashes_known
        window = range(state.next_index, min(self.count, state.next_index + c.window))
        wanted = [i for i in window if i not in state.inflight and i not in state.ready and i < known]
        resting = {p for p, until in state.backoff.items() if until > self.now}
        holders = {i: [p for p, held in state.holdings if i < held and p not in resting] for i in wanted}
        busy = Counter(t.src for t in state.inflight.values())
        for index, peer in choose_requests(wanted, holders, busy, c.per_peer):
            server = self.nodes[peer]
            if len(server.uploads) >= c.max_uploads or server.next_index <= index:
                state.backoff[peer] = self.now + c.refused_backoff  # 503 busy, or 404 not written
                self.refused += 1
                continue
            state.inflight[index] = self.begin_transfer(peer, node, index)

    def stalled(self, node: int) -> None:
        state = self.nodes[node]
        for transfer in list(state.inflight.values()):
            self.end_transfer(transfer)
        state.inflight.clear()
        state.ready.clear()
        state.rounds += 1
        moved = state.next_index > state.round_start_index
        if self.acquire_lease(node):
            state.seeding = True
            self.begin_origin(node)
        elif state.rounds < 3 and (moved or state.rounds == 1) and self.lookup(node):
            self.begin_download(node)
        else:
            self.begin_origin(node)

    # -- the origin --------------------------------------------------------------------------------------
    def begin_origin(self, node: int) -> None:
        state = self.nodes[node]
        state.mode = "origin"
        self.at(self.now + self.c.origin_first_byte_s, self.origin_next_piece, node)

    def origin_next_piece(self, node: int) -> None:
        state = self.nodes[node]
        if state.next_index >= self.count:
            self.finish(node)
            return
        start, end = piece_bounds(state.next_index, self.c.blob_size, self.c.piece_size)
        self.origin_bytes += end - start
        self.begin_transfer(ORIGIN, node, state.next_index)

    def publish_tick(self, node: int) -> None:
        """The seed's publish loop: hashes of the pieces it has written so far."""
        state = self.nodes[node]
        if state.next_index > self.hashes_published:
            self.tracker_request("put_pieces")
            self.hashes_published = state.next_index
        if state.mode == "origin":
            self.at(self.now + self.c.poll_interval, self.publish_tick, node)

    # -- transfers with shared links -----------------------------------------------------------------------
    def begin_transfer(self, src: int, dst: int, index: int) -> Transfer:
        start, end = piece_bounds(index, self.c.blob_size, self.c.piece_size)
        tid = next(self.transfer_ids)
        transfer = Transfer(tid, src, dst, index, float(end - start), stamp=self.now)
        self.transfers[tid] = transfer
        self._link(src, dst, tid, add=True)
        self._rerate(src, dst)
        return transfer

    def end_transfer(self, transfer: Transfer) -> None:
        del self.transfers[transfer.tid]
        self._link(transfer.src, transfer.dst, transfer.tid, add=False)
        self._rerate(transfer.src, transfer.dst)

    def _link(self, src: int, dst: int, tid: int, add: bool) -> None:
        uploads = self.origin_streams if src == ORIGIN else self.nodes[src].uploads
        for group in (uploads, self.nodes[dst].downloads):
            (group.add if add else group.discard)(tid)

    def _rerate(self, src: int, dst: int) -> None:
        uploads = self.origin_streams if src == ORIGIN else self.nodes[src].uploads
        for tid in uploads | self.nodes[dst].downloads:
            transfer = self.transfers[tid]
            rate = self._rate(transfer)
            if rate == transfer.rate:
                continue
            transfer.remaining -= transfer.rate * (self.now - transfer.stamp)
            transfer.stamp, transfer.rate = self.now, rate
            transfer.version += 1
            self.at(self.now + max(transfer.remaining, 0.0) / rate, self.transfer_done, tid, transfer.version)

    def _rate(self, transfer: Transfer) -> float:
        """Equal shares, not max-min fair: each side's capacity split by its active transfers."""
        if transfer.src == ORIGIN:
            up = self.c.origin_bytes_per_s / len(self.origin_streams)
        else:
            up = self.c.link_bytes_per_s / len(self.nodes[transfer.src].uploads)
        return min(up, self.c.link_bytes_per_s / len(self.nodes[transfer.dst].downloads))

    def transfer_done(self, tid: int, version: int) -> None:
        transfer = self.transfers.get(tid)
        if transfer is None or transfer.version != version:
            return  # re-rated or cancelled since
        del self.transfers[tid]
        self._link(transfer.src, transfer.dst, tid, add=False)
        self._rerate(transfer.src, transfer.dst)
        state = self.nodes[transfer.dst]
        if transfer.src == ORIGIN:
            state.next_index += 1
            self.origin_next_piece(transfer.dst)
            return
        if state.inflight.get(transfer.index) is transfer:
            del state.inflight[transfer.index]
            state.ready.add(transfer.index)
            state.last_progress = self.now
            self.wake(transfer.dst)

    # -- completion, announces, heartbeats -------------------------------------------------------------------
    def finish(self, node: int) -> None:
        state = self.nodes[node]
        if state.done_at is None:
            state.mode, state.done_at = "done", self.now
            self.unfinished -= 1
            if state.seeding:
                self.publish_tick(node)  # the seed flushes its last hashes as the fill closes

    def announce_tick(self, node: int) -> None:
        state = self.nodes[node]
        complete = state.done_at is not None
        pieces = self.count if complete else state.next_index
        tracked = complete or state.mode == "peer" or (state.mode == "origin" and state.seeding)
        if tracked and (pieces != state.announced or complete != state.announced_complete):
            self.tracker_request("announce")
            state.announced, state.announced_complete = pieces, complete
            self.tracker_update(node, len(state.uploads), pieces)
            self.complete_copies += complete
            if complete and self.lease_holder == node:
                self.lease_holder = None  # the tracker ends the lease when the seed is complete
        self.at(self.now + self.c.announce_interval, self.announce_tick, node)

    def heartbeat_tick(self, node: int) -> None:
        self.tracker_request("heartbeat")
        state = self.nodes[node]
        if state.announced > 0:
            self.tracker_update(node, len(state.uploads), self.tracked.get(node, (0, 0))[1])
        self.at(self.now + self.c.heartbeat_interval, self.heartbeat_tick, node)

    # -- the numbers ----------------------------------------------------------------------------------------
    def summary(self) -> dict[str, object]:
        done = sorted(n.done_at for n in self.nodes if n.done_at is not None)
        last = done[-1]
        seconds = range(int(last) + 1)
        per_second = [self.requests_per_s.get(s, 0) for s in seconds]
        return {
            "nodes": self.c.nodes,
            "last_done_s": last,
            "median_done_s": done[len(done) // 2],
            "origin_only_s": self.c.blob_size / self.c.origin_bytes_per_s,
            "origin_ratio": self.origin_bytes / self.c.blob_size,
            "tracker_requests": sum(self.requests.values()),
            "tracker_requests_by_kind": dict(self.requests),
            "tracker_rps_peak": max(per_second),
            "tracker_rps_mean": sum(per_second[: int(last)] or per_second) / max(1, int(last)),
            "stall_rounds": sum(n.rounds for n in self.nodes),
            "refused_requests": self.refused,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10,100,1000")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", default="product,proposed")
    args = parser.parse_args()
    results = []
    for policy in args.policies.split(","):
        for count in (int(n) for n in args.nodes.split(",")):
            config = SimConfig(nodes=count, blob_size=args.size_mib * MiB, seed=args.seed, policy=policy)
            started = time.perf_counter()
            result = {"policy": policy, **Simulation(config).run()}
            result["simulation_wall_s"] = time.perf_counter() - started
            results.append(result)
            print(
                f"{policy} N={count}: last done {result['last_done_s']:.2f} s, origin "
                f"{result['origin_ratio']:.3f}x, tracker peak {result['tracker_rps_peak']} req/s "
                f"({result['simulation_wall_s']:.1f} s wall)",
                flush=True,
            )
    rows = [
        [
            r["policy"],
            r["nodes"],
            r["last_done_s"],
            r["median_done_s"],
            r["origin_only_s"],
            r["origin_ratio"],
            r["stall_rounds"],
            r["tracker_rps_peak"],
            r["tracker_rps_mean"],
            r["tracker_requests"],
        ]
        for r in results
    ]
    table = Table(
        [
            "policy",
            "N",
            "last node done s",
            "median node s",
            "1 origin copy s",
            "origin bytes / blob",
            "stalls",
            "tracker req/s peak",
            "tracker req/s mean",
            "tracker requests",
        ],
        rows,
    )
    write_result(
        "p2p_sim",
        {"config": {k: v for k, v in asdict(SimConfig(nodes=0)).items() if k != "nodes"}, "results": results},
        [table],
    )


if __name__ == "__main__":
    main()
