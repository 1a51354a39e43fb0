"""This mirror as a peer: what it tells the tracker (like spegel's sync.go: cache events become
announce and withdraw calls, so the store never sees the tracker), and how it reaches peers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from typing import Any

from cachetools import TTLCache

from nvme_cache import BlobStore, Digest, FillFailed, FillSource, Landed
from nvme_cache.threads import worker_pool
from oci import bearer_token, token_matches
from p2p import metrics
from p2p.config import P2PConfig
from p2p.errors import BadPiece, TrackerError
from p2p.piece_client import Abort, Arrived, Buffers, Landing, PieceClient, Run, WantedPiece
from p2p.pieces import pieces_within
from p2p.swarm import SwarmStream
from p2p.tracker.models import MAX_BLOBS_PER_ANNOUNCE, MAX_EXCLUDES, BlobState, PeerHolding, PeerInfo
from p2p.tracker_client import TrackerClient

log = logging.getLogger("p2p.node")


class P2PNode:
    def __init__(self, config: P2PConfig, store: BlobStore) -> None:
        self.config = config
        self.store = store
        self.tracker = TrackerClient(config.tracker_url, config.tracker_token, ssl_context=config.client_ssl)
        self.uploads_active = 0
        self._pieces = PieceClient(config.client_ssl, config.tracker_token, config.stall_timeout)
        # Peer pieces and a seed's origin bytes are received on these (blocking reads, GIL released).
        self.piece_threads = worker_pool("p2p-receive", 16)
        self._tracked: dict[str, tuple[int, int]] = {}  # fills in progress: digest -> (size, piece size)
        self._announced: dict[str, int] = {}  # pieces last announced per tracked digest
        self._completed: dict[str, int] = {}  # committed since the last announce: digest -> size
        self._withdrawn: set[str] = set()
        self._tasks: list[asyncio.Task[Any]] = []  # the loops, cancelled at close
        self._background: set[asyncio.Task[None]] = set()  # short jobs (settle a fill, report a peer)
        self._origin_slots = asyncio.Semaphore(max(1, config.origin_concurrency))
        self._peers_seen: dict[str, float] = {}
        # sha256(Authorization header) -> whether the tracker accepted it, so a peer's node token
        # costs one tracker call per ten minutes, and a flood of wrong ones one per minute each.
        self._peer_tokens: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=600.0)
        self._wrong_tokens: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=60.0)
        metrics.register_peer_count(self.peers_known)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.store.on_commit.append(self._on_commit)
        self.store.on_evict.append(self._on_evict)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._announce_loop()), loop.create_task(self._heartbeat_loop())]
        self._tasks.append(loop.create_task(self._announce_everything()))

    async def aclose(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.piece_threads.shutdown(wait=False, cancel_futures=True)
        self._pieces.close()
        await self.tracker.aclose()

    @contextlib.asynccontextmanager
    async def origin_slot(self) -> AsyncIterator[None]:
        """At most origin_concurrency origin fetches at once; a fill waits at most stall_timeout
        for a slot and then goes anyway, because a client must never hang on the cap."""
        try:
            await asyncio.wait_for(self._origin_slots.acquire(), self.config.stall_timeout)
        except TimeoutError:
            log.warning("origin concurrency cap reached for %.0fs: fetching anyway", self.config.stall_timeout)
            yield
            return
        try:
            yield
        finally:
            self._origin_slots.release()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def peer(self) -> PeerInfo:
        return PeerInfo(self.config.peer_id, self.config.advertise_url, self.config.zone, float(self.uploads_active))

    # -- the source wrapper the front end installs ----------------------------------------------
    def wrap(self, digest: Digest, origin: FillSource, size: int | None = None) -> FillSource:
        @contextlib.asynccontextmanager
        async def open_swarm(offset: int = 0) -> AsyncIterator[SwarmStream]:
            if offset:  # a swarm download resumes by itself (takeover, origin Range), from 0
                raise ValueError(f"a swarm source starts at byte 0, not {offset}")
            stream = SwarmStream(self, str(digest), origin, size_hint=size)
            failed = True
            try:
                await stream.open()
                yield stream
                failed = False
            finally:
                await stream.aclose(failed)

        return open_swarm

    # -- what fills in progress tell the tracker --------------------------------------------------
    def track(self, digest: str, size: int, piece_size: int) -> None:
        self._tracked[digest] = (size, piece_size)

    def untrack(self, digest: str, *, failed: bool) -> None:
        # The source closed, but verification, fsync and rename still follow: keep announcing
        # the pieces (the last ones too) until the fill ended, then "complete" or withdraw.
        self._spawn(self._settle(digest))

    async def _settle(self, digest: str) -> None:
        fill = self.store.inflight(Digest.parse(digest))
        if fill is not None:
            with contextlib.suppress(FillFailed):
                await fill.wait()
        self._tracked.pop(digest, None)
        self._announced.pop(digest, None)
        if self.store.stat(Digest.parse(digest)) is None:
            self._withdrawn.add(digest)
            with contextlib.suppress(TrackerError):
                # Hashes published from bytes that failed the whole-blob check would make every
                # downloader refuse honest peers' pieces: take them back first (a no-op unless
                # this node published some).
                if await self.tracker.reset_pieces(digest, self.config.peer_id):
                    log.warning("fill of %s failed verification: withdrew its piece hashes", digest)
                await self.tracker.release(digest, self.config.peer_id)

    def _on_commit(self, digest: str, size: int) -> None:
        self._completed[digest] = size
        self._withdrawn.discard(digest)

    def _on_evict(self, digest: str, size: int) -> None:
        self._completed.pop(digest, None)
        self._withdrawn.add(digest)

    def _progress(self) -> list[BlobState]:
        states = []
        for digest, (size, piece_size) in list(self._tracked.items()):
            progress = self.store.progress(Digest.parse(digest))
            if progress is None or not progress.shareable:
                continue
            count = pieces_within(progress.written, size, piece_size)
            if self._announced.get(digest) != count:
                self._announced[digest] = count
                states.append(BlobState(digest, size, piece_size, False, frozenset(range(count))))
        return states

    async def _announce_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.announce_interval)
            await self._announce_once()

    async def _announce_once(self) -> None:
        completed, self._completed = self._completed, {}
        states = self._progress() + [
            BlobState(d, s, self.config.piece_size, complete=True) for d, s in completed.items()
        ]
        withdrawn, self._withdrawn = self._withdrawn, set()
        try:
            for batch in _batches(states, MAX_BLOBS_PER_ANNOUNCE):
                await self.tracker.announce(self.peer(), batch)
            if withdrawn:
                await self.tracker.withdraw(self.config.peer_id, sorted(withdrawn)[:MAX_BLOBS_PER_ANNOUNCE])
        except TrackerError as exc:
            log.warning("announce failed: %s", exc)
            self._completed.update(completed)
            self._withdrawn |= withdrawn
            for state in states:
                self._announced.pop(state.digest, None)

    async def _announce_everything(self) -> None:
        """Every committed blob, in batches: after a start, or when the tracker forgot us."""
        index = self.store.index
        for digest, entry in index.lru():
            self._completed[digest] = entry.size
        self._announced.clear()
        await self._announce_once()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                known = await self.tracker.heartbeat(self.peer())
            except TrackerError as exc:
                log.warning("tracker heartbeat failed: %s", exc)
                continue
            if not known:
                log.info("the tracker forgot this peer: announcing every blob again")
                await self._announce_everything()

    # -- asking the swarm -----------------------------------------------------------------------------
    async def holders(self, digest: str, excluded: Iterable[str] = (), piece: int | None = None) -> list[PeerHolding]:
        exclude = [self.config.peer_id, *excluded][:MAX_EXCLUDES]
        try:
            found = await self.tracker.peers(digest, zone=self.config.zone, exclude=exclude, piece=piece)
        except TrackerError as exc:
            log.warning("peer lookup for %s failed: %s", digest, exc)
            return []
        now = time.monotonic()
        for holding in found:
            self._peers_seen[holding.peer.id] = now
        return [h for h in found if h.peer.id not in exclude and h.size > 0]

    def peers_known(self, within: float = 300.0) -> int:
        """Distinct peers the tracker named to us in the last `within` seconds."""
        cutoff = time.monotonic() - within
        self._peers_seen = {p: t for p, t in self._peers_seen.items() if t >= cutoff}
        return len(self._peers_seen)

    async def status(self) -> dict[str, Any]:
        """For `ctl status` through the admin API."""
        answer: dict[str, Any] = {
            "peer_id": self.config.peer_id,
            "advertise": self.config.advertise_url,
            "tracker": self.config.tracker_url,
            "zone": self.config.zone,
            "uploads_active": self.uploads_active,
            "fills_shared": len(self._tracked),
            "peers_known": self.peers_known(),
        }
        try:
            answer["tracker_stats"] = await self.tracker.stats()
        except TrackerError as exc:
            answer["tracker_error"] = str(exc)
        return answer

    async def piece_hashes(self, digest: str, piece_size: int) -> dict[int, str] | None:
        """The published hashes of pieces of `piece_size` (none published: empty); None when the
        tracker cannot be asked."""
        try:
            published = await self.tracker.get_pieces(digest)
        except TrackerError as exc:
            log.warning("piece hashes of %s unavailable: %s", digest, exc)
            return None
        if published is None or published.piece_size != piece_size:
            return {}
        return dict(published.hashes)

    def report_later(self, peer_id: str, digest: str, bad: BadPiece) -> None:
        async def report() -> None:
            with contextlib.suppress(TrackerError):
                evidence = (bad.index, bad.expected, bad.received)
                await self.tracker.report(self.config.peer_id, peer_id, digest, f"bad piece {bad.index}", evidence)

        self._spawn(report())

    async def peer_authorized(self, authorization: str) -> bool:
        """Whether a peer's `Authorization` header may read blobs here: our own token (the shared
        token mode), or any credential the tracker accepts (per-node tokens, which only the
        tracker can verify)."""
        token = self.config.tracker_token
        if token is None:
            return True
        offered = bearer_token(authorization)
        if offered is None:
            return False
        if token_matches(offered, token):
            return True
        key = hashlib.sha256(authorization.encode()).hexdigest()
        known = self._peer_tokens.get(key)
        if known is None and key not in self._wrong_tokens:
            try:
                await self.tracker.whoami(offered)
                known = self._peer_tokens[key] = True
            except TrackerError as exc:
                if exc.status in (401, 403):
                    self._wrong_tokens[key] = True
                known = False
        return bool(known)

    async def fetch_run(
        self,
        base_url: str,
        digest: str,
        wanted: Sequence[WantedPiece],
        buffers: Buffers,
        land: Landing | None = None,
        arrived: Arrived | None = None,
    ) -> Run:
        """Consecutive pieces from one peer, each checked against its published hash (on a
        worker thread: p2p.piece_client). `land`: the fill's temp file, to write them into.
        `arrived` is called on the loop with each verified piece as soon as the thread has it
        (the returned run lists them all again).

        Cancelled, the thread writes nothing more once `abort()` returned: another source may
        own those bytes by then."""
        abort = Abort()
        loop = asyncio.get_running_loop()
        own = land.for_run() if land is not None else None  # the thread closes its descriptor

        def hand_over(index: int, data: bytearray | Landed) -> None:  # on the run's thread
            if arrived is not None:
                loop.call_soon_threadsafe(arrived, index, data)

        try:
            work = self.piece_threads.submit(
                self._pieces.fetch, base_url, digest, wanted, buffers, abort, own, hand_over
            )
        except BaseException:
            if own is not None:
                own.close()  # no thread will ever close it
            raise
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            abort()  # the thread's blocked read fails now, instead of at its timeout
            # Still queued behind busy receive threads: it never runs, so its descriptor (the
            # fill's temp file, unlinked when the fill ends) is closed here, or it stays open and
            # its blocks allocated for as long as the process lives.
            if work.cancel() and own is not None:
                own.close()
            raise


def _batches(items: list[BlobState], size: int) -> Iterable[list[BlobState]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
