"""One fill's view of the swarm: download verified pieces from peers, or be the seed, or fall
back to the origin, and never leave a client waiting on a dead swarm.

How a missing blob is fetched:
1. Peers that hold it (whole, or pieces of a fill in progress) -> download from them.
2. Nobody has it -> ask the tracker for the seed lease. Granted: fetch from the origin, hash each
   piece on the fill's worker thread and publish the hashes. Refused: another mirror is the seed;
   wait for its announcement (bounded by stall_timeout), then download from it.
3. A download that makes no progress for stall_timeout takes the lease over (the seed died) and
   resumes from the origin with a Range; if another mirror took the lease, it goes back to the
   swarm (bounded rounds); failing that, it resumes from the origin without the lease: a client
   is never left waiting.

Pieces are fetched in order with a window of parallel requests: the fill streams to its clients
as it goes, so the next piece it needs matters more than global rarity; within the window the
rarest pieces are asked for first, consecutive pieces for one peer go in one request (a run, up
to run_pieces), and no peer gets more than two runs at once. Runs are received and checked on
worker threads (p2p.piece_client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Protocol

from nvme_cache import Landed, RangeBody, ranges_of
from p2p import metrics
from p2p.config import P2PConfig
from p2p.errors import BadPiece, PeerUnreachable, PieceError, TrackerError
from p2p.piece_client import Arrived, Buffers, DiskFull, Landing, Run, WantedPiece
from p2p.pieces import PieceHasher, piece_bounds, piece_count
from p2p.scheduler import choose_requests
from p2p.tracker.models import PeerHolding
from p2p.tracker_client import TrackerClient

log = logging.getLogger("p2p.swarm")


class _Stream(Protocol):
    size: int | None

    def __aiter__(self) -> AsyncIterator[bytes | bytearray | Landed]: ...


class OriginOpener(Protocol):
    def __call__(self, offset: int = 0) -> AbstractAsyncContextManager[_Stream]: ...


class SwarmNode(Protocol):
    """What one fill's swarm download needs from this mirror's peer (p2p.node.P2PNode), so the
    node builds streams and the streams never import the node."""

    @property
    def config(self) -> P2PConfig: ...

    @property
    def tracker(self) -> TrackerClient: ...

    @property
    def piece_threads(self) -> Executor: ...

    def origin_slot(self) -> AbstractAsyncContextManager[None]: ...

    def track(self, digest: str, size: int, piece_size: int) -> None: ...

    def untrack(self, digest: str, *, failed: bool) -> None: ...

    async def holders(
        self, digest: str, excluded: Iterable[str] = (), piece: int | None = None
    ) -> list[PeerHolding]: ...

    async def piece_hashes(self, digest: str, piece_size: int) -> dict[int, str] | None: ...

    def report_later(self, peer_id: str, digest: str, bad: BadPiece) -> None: ...

    async def fetch_run(
        self,
        base_url: str,
        digest: str,
        wanted: Sequence[WantedPiece],
        buffers: Buffers,
        land: Landing | None = None,
        arrived: Arrived | None = None,
    ) -> Run: ...


class SwarmStream:
    """A fill source stream (nvme_cache.SourceStream) with a `tap` for piece hashing."""

    def __init__(self, node: SwarmNode, digest: str, origin: OriginOpener, size_hint: int | None = None) -> None:
        self._node = node
        self._config = node.config
        self._digest = digest
        self._origin = origin
        self._exits = AsyncExitStack()
        self._loop = asyncio.get_running_loop()
        self.size: int | None = None
        self.source = "peer"
        self._piece_size = node.config.piece_size
        self._mode = "peer"
        self._origin_stream: _Stream | None = None
        self._hasher: PieceHasher | None = None
        self._new_hashes: dict[int, str] = {}
        self._publisher: asyncio.Task[None] | None = None
        self._seeding = False
        self._offset = 0
        self._excluded: set[str] = set()
        self._size_hint = size_hint  # from a listing, for origins that send no Content-Length
        self._buffers: Buffers | None = None
        self._land: Landing | None = None  # the fill's temp file (our descriptor): peers' pieces land there

    # -- choosing where the bytes come from ----------------------------------------------------
    async def open(self) -> None:
        deadline = self._loop.time() + self._config.stall_timeout
        waited = False
        while True:
            found = await self._node.holders(self._digest, self._excluded)
            piece_size = await self._piece_size_of(found)
            if self._consistent(found, piece_size):
                self.size, self._piece_size = self._size_hint, piece_size
                metrics.p2p_fills.add(1, {"mode": "peer"})
                return
            try:
                lease = await self._node.tracker.lease(self._digest, self._config.peer_id, self._config.lease_ttl)
            except TrackerError as exc:
                log.warning("tracker unavailable (%s): fetching %s from the origin", exc, self._digest)
                await self._open_origin(0, seed=False)
                return
            if lease.granted:
                await self._open_origin(0, seed=True)
                return
            if self._size_hint is None:
                await self._open_origin(0, seed=False)  # no trusted size: no peer will be used
                return
            if not waited:
                metrics.lease_waits.add(1)
                waited = True
            if self._loop.time() >= deadline:
                log.warning("seed %s announced nothing for %s: fetching from the origin", lease.holder_id, self._digest)
                await self._open_origin(0, seed=False)
                return
            await asyncio.sleep(self._config.poll_interval)

    async def _piece_size_of(self, found: list[PeerHolding]) -> int:
        """The piece size of the seed's published hashes, which only pieces of that size can be
        checked against; before any are published, that of the first holder with the right size.
        Never simply the first holder's: one announcing another piece size would cut the
        download off every hash and every honest holder."""
        sized = [h for h in found if h.size == self._size_hint]
        if not sized:
            return self._piece_size
        if len({h.piece_size for h in sized}) == 1:
            return sized[0].piece_size  # they agree: no need to ask (open polls while it waits)
        try:
            published = await self._node.tracker.get_pieces(self._digest)
        except TrackerError:
            published = None
        return published.piece_size if published is not None else sized[0].piece_size

    def _consistent(self, holdings: list[PeerHolding], piece_size: int | None = None) -> list[PeerHolding]:
        """The holders whose announcement agrees with the size from the origin (or the listing):
        a size is never taken from a peer. Without a trusted size, no peer is used at all. A
        partial holder must count pieces of `piece_size` (default: the download's); a complete
        one serves any range, whatever piece size it announced."""
        if self._size_hint is None:
            return []
        piece_size = self._piece_size if piece_size is None else piece_size
        usable: list[PeerHolding] = []
        for holding in holdings:
            if holding.size != self._size_hint:
                self._exclude(holding.peer.id, "size")
                log.warning(
                    "peer %s announced %d bytes for %s, the origin says %d: not used",
                    holding.peer.id,
                    holding.size,
                    self._digest,
                    self._size_hint,
                )
            elif not holding.complete and holding.piece_size != piece_size:
                continue  # another piece size: its pieces do not line up with these hashes
            else:
                usable.append(holding)
        return usable

    def _exclude(self, peer_id: str, reason: str) -> None:
        """For this blob only: a peer that lied or cannot be reached is not asked again."""
        if peer_id not in self._excluded:
            self._excluded.add(peer_id)
            metrics.peers_excluded.add(1, {"reason": reason})

    async def _open_origin(self, offset: int, *, seed: bool) -> None:
        await self._exits.enter_async_context(self._node.origin_slot())
        stream = await self._open_origin_body(offset)
        if stream is None:
            stream = await self._exits.enter_async_context(self._origin(offset))
        remaining = stream.size
        total = self._size_hint if remaining is None else offset + remaining
        if self.size is None:
            self.size = total
        elif total is not None and total != self.size:
            raise PieceError(f"origin says {total} bytes for {self._digest}, the swarm said {self.size}")
        self._origin_stream = stream
        self._mode = "origin"
        self.source = "origin"
        metrics.p2p_fills.add(1, {"mode": "seed" if seed else ("takeover" if offset else "origin")})
        if seed and self.size is not None:
            self._seeding = True
            self._hasher = PieceHasher(self.size, self._piece_size, offset, self._piece_hashed)
            self._node.track(self._digest, self.size, self._piece_size)
            self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())

    async def _open_origin_body(self, offset: int) -> _Stream | None:
        """The origin's bytes read on a worker thread into piece buffers, when the origin source
        offers ranges (one request from `offset` to the end: still one origin GET per seed).
        None: use the source's own stream."""
        ranges = ranges_of(self._origin)
        if ranges is None:
            return None
        attempt = AsyncExitStack()
        body = await attempt.enter_async_context(ranges.open(offset, None))
        # An origin without Range support answers the whole blob: a takeover then reads its first
        # `offset` bytes again and drops them, where asking the plain stream for a 206 would fail
        # the pull (P2P must never make a pull fail that the origin alone would serve).
        whole = not body.ranged and body.start == 0
        if (body.start != offset and not whole) or body.total is None:
            await attempt.aclose()  # no usable answer: the plain stream knows what to do
            return None
        self._exits.push_async_callback(attempt.aclose)
        if self._buffers is None:
            self._buffers = Buffers(self._piece_size, keep=4)
        skip = offset - body.start
        if skip:
            log.info("%s: the origin ignored a Range from %d; reading its first bytes again", self._digest, offset)
            metrics.origin_reread_bytes.add(skip)
        return _ThreadedBody(
            body, body.total - offset, self._piece_size, self._buffers, self._node.piece_threads, skip=skip
        )

    # -- the fill's view -------------------------------------------------------------------------
    def tap(self, offset: int, chunk: bytes) -> None:
        if self._hasher is not None:
            self._hasher(offset, chunk)

    def land_in(self, fd: int | None, direct: bool = False) -> None:
        """The fill's temp file (None: write nothing more into it; hand over bytes instead), and
        whether aligned pieces go around the page cache (the fill's `direct_writes`)."""
        if self._land is not None:
            self._land.close()
        self._land = Landing(os.dup(fd), threading.Lock(), direct) if fd is not None else None

    def release(self, chunk: bytes | bytearray | Landed) -> None:
        """The fill has written and hashed `chunk`: its buffer takes the next piece."""
        if self._buffers is not None and isinstance(chunk, bytearray):
            self._buffers.give(chunk)

    def __aiter__(self) -> AsyncIterator[bytes | bytearray | Landed]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes | bytearray | Landed]:
        rounds = 0
        while self._mode == "peer":
            assert self.size is not None
            self._node.track(self._digest, self.size, self._piece_size)
            before = self._offset
            async for piece in self._download():
                self._offset += piece.length if isinstance(piece, Landed) else len(piece)
                yield piece
            if self._offset >= self.size:
                return
            rounds += 1
            # Stalled. The lease if it is free; back to the swarm if someone else took it (and
            # the last round moved); the origin otherwise.
            rejoin = rounds < 3 and (self._offset > before or rounds == 1)
            choice = await self._rejoin() if rejoin else "origin"
            if choice == "seed":
                await self._open_origin(self._offset, seed=True)
            elif choice == "origin":
                await self._open_origin(self._offset, seed=False)
        assert self._origin_stream is not None
        async for chunk in self._origin_stream:
            yield chunk

    async def aclose(self, failed: bool) -> None:
        await asyncio.sleep(0)  # let the last piece hashes from the worker thread arrive
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            await self._flush_hashes()
        if self._seeding and failed:
            with contextlib.suppress(TrackerError):
                await self._node.tracker.release(self._digest, self._config.peer_id)
        self._node.untrack(self._digest, failed=failed)
        self.land_in(None, False)
        await self._exits.aclose()

    # -- seeding --------------------------------------------------------------------------------
    def _piece_hashed(self, index: int, hexdigest: str) -> None:
        # Called on the fill's worker thread. Not `self._new_hashes.__setitem__`: that would bind
        # the dict of this moment, and a flush may swap it out before the callback runs.
        self._loop.call_soon_threadsafe(self._record_hash, index, hexdigest)

    def _record_hash(self, index: int, hexdigest: str) -> None:
        self._new_hashes[index] = hexdigest

    async def _publish_loop(self) -> None:
        renew_every = max(self._config.lease_ttl / 3, 0.5)
        next_renew = self._loop.time() + renew_every
        while True:
            await asyncio.sleep(self._config.poll_interval)
            await self._flush_hashes()
            if self._loop.time() >= next_renew:
                next_renew = self._loop.time() + renew_every
                with contextlib.suppress(TrackerError):
                    await self._node.tracker.lease(self._digest, self._config.peer_id, self._config.lease_ttl)

    async def _flush_hashes(self) -> None:
        if not self._new_hashes:
            return
        batch, self._new_hashes = self._new_hashes, {}
        assert self.size is not None
        try:
            await self._node.tracker.put_pieces(
                self._digest, self._config.peer_id, self._piece_size, batch, size=self.size
            )
        except TrackerError as exc:
            log.warning("publishing piece hashes of %s failed: %s", self._digest, exc)
            self._new_hashes.update(batch)  # try again with the next batch
        except BaseException:
            # Cancelled mid-request (the stream closed): the final flush must still send these,
            # or every downloader stalls at the first piece whose hash never arrived.
            self._new_hashes.update(batch)
            raise

    # -- downloading ----------------------------------------------------------------------------
    async def _download(self) -> AsyncIterator[bytearray | Landed]:
        assert self.size is not None
        config = self._config
        count = piece_count(self.size, self._piece_size)
        next_index = self._offset // self._piece_size
        inflight: dict[int, tuple[asyncio.Task[Run], str]] = {}  # every piece of a run -> its task
        ready: dict[int, bytearray | Landed] = {}
        hashes: dict[int, str] = {}
        excluded = self._excluded  # served a bad piece: never again for this blob
        backoff: dict[str, float] = {}  # refused or failed: skipped until the time given
        holdings: list[PeerHolding] = []
        last_refresh = -1.0
        last_progress = self._loop.time()

        def arrived(index: int, data: bytearray | Landed) -> None:
            """A verified piece, as soon as its run's thread has it (not when the whole run is in):
            under a peer's upload cap a run takes seconds, and its pieces are progress all along."""
            nonlocal last_progress
            if index >= next_index and index not in ready:
                ready[index] = data
                last_progress = self._loop.time()

        try:
            while next_index < count:
                now = self._loop.time()
                if now - last_refresh >= config.poll_interval:
                    last_refresh = now
                    holdings = self._consistent(await self._node.holders(self._digest, excluded, piece=next_index))
                    if any(i not in hashes for i in range(next_index, min(count, next_index + config.window))):
                        hashes.update(await self._node.piece_hashes(self._digest, self._piece_size) or {})
                resting = excluded | {p for p, until in backoff.items() if until > self._loop.time()}
                self._schedule(next_index, count, holdings, hashes, resting, inflight, ready, arrived)
                if next_index not in ready:
                    tasks = {task for task, _ in inflight.values()}
                    if tasks:
                        await asyncio.wait(tasks, timeout=config.poll_interval, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await asyncio.sleep(config.poll_interval)
                for task, peer_id, indexes in _finished(inflight):
                    failed = None if task.cancelled() or task.exception() is not None else task.result().error
                    accuse = not isinstance(failed, BadPiece) or await self._still_published(failed, hashes)
                    if self._collect(task, indexes, peer_id, excluded, backoff, arrived, accuse=accuse):
                        last_progress = self._loop.time()
                while next_index in ready:
                    yield ready.pop(next_index)
                    next_index += 1
                    last_progress = self._loop.time()
                if holdings and not any(h.peer.id not in excluded for h in holdings):
                    holdings = []
                # Only resting peers left (refused, failing): as good as none, so a dead swarm
                # costs about a second, not stall_timeout.
                usable = [h for h in holdings if h.peer.id not in excluded and backoff.get(h.peer.id, 0) <= now]
                # Holders that claim the whole blob while its piece hashes were never published are
                # inconsistent: nothing can be verified from them, so they count as none.
                unverifiable = next_index not in hashes and all(h.complete for h in usable)
                if (not usable or unverifiable) and not inflight and self._loop.time() - last_progress > 1.0:
                    log.info("no usable peer holds %s any more: leaving the swarm", self._digest)
                    return
                if self._loop.time() - last_progress > config.stall_timeout:
                    log.warning("download of %s stalled at piece %d: leaving the swarm", self._digest, next_index)
                    return
        finally:
            tasks = {task for task, _ in inflight.values()}
            for task in tasks:
                task.cancel()
            # Each run's thread has stopped landing bytes before another source takes over.
            await asyncio.gather(*tasks, return_exceptions=True)

    def _schedule(
        self,
        next_index: int,
        count: int,
        holdings: list[PeerHolding],
        hashes: dict[int, str],
        excluded: set[str],
        inflight: dict[int, tuple[asyncio.Task[Run], str]],
        ready: dict[int, bytearray | Landed],
        arrived: Arrived,
    ) -> None:
        run_pieces = self._config.run_pieces
        window = range(next_index, min(count, next_index + self._config.window))
        wanted = [i for i in window if i not in inflight and i not in ready and i in hashes]
        usable = [h for h in holdings if h.peer.id not in excluded]
        holders = {i: [h.peer.id for h in usable if h.has(i)] for i in wanted}
        by_id = {h.peer.id: h for h in usable}
        busy: dict[str, int] = {}
        for _, peer_id in inflight.values():
            busy[peer_id] = busy.get(peer_id, 0) + 1
        # The scheduler counts pieces; a peer may have two runs of run_pieces in flight.
        chosen = choose_requests(wanted, holders, busy, per_peer=2 * run_pieces)
        for peer_id, run in _runs(chosen, run_pieces):
            task = self._loop.create_task(self._fetch_run(by_id[peer_id], run, hashes, arrived))
            for index in run:
                inflight[index] = (task, peer_id)

    async def _still_published(self, bad: BadPiece, hashes: dict[int, str]) -> bool:
        """Whether the hash a piece failed is still the one published. A seed that withdrew its
        hashes (its blob did not verify) or a takeover seed that replaced them leaves this
        download's copy stale: an honest peer's piece then fails it, which is no evidence against
        that peer. Then the copy is refreshed (or dropped until hashes are published again)."""
        current = await self._node.piece_hashes(self._digest, self._piece_size)
        if current is None:
            return True  # cannot tell: judged on the hash it had, as before
        if current.get(bad.index) == bad.expected:
            return True
        log.info("piece hashes of %s changed under the download: piece %d is asked again", self._digest, bad.index)
        metrics.stale_piece_hashes.add(1)
        hashes.clear()
        hashes.update(current)
        return False

    def _collect(
        self,
        task: asyncio.Task[Run],
        indexes: list[int],
        peer_id: str,
        excluded: set[str],
        backoff: dict[str, float],
        arrived: Arrived,
        *,
        accuse: bool = True,
    ) -> bool:
        """Takes a finished run's verified pieces (those its thread did not hand over already);
        judges the peer by why the run stopped (a bad piece only if `accuse`: its hash was still
        the published one)."""
        try:
            run = task.result()
        except Exception as exc:  # noqa: BLE001 - e.g. the piece threads shut down
            run = Run(error=exc)
        for index, data in run.pieces:
            arrived(index, data)
            metrics.pieces_received.add(1, {"into": "file" if isinstance(data, Landed) else "buffer"})
        error = run.error
        if error is None:
            return bool(run.pieces)
        index = indexes[min(len(run.pieces), len(indexes) - 1)]
        if isinstance(error, DiskFull):
            # Not the peer's doing: pieces come in buffers from now on, and the fill's own write
            # meets the full disk (evict and retry, else serve the blob uncached).
            log.warning("no room to land piece %d of %s: %s", index, self._digest, error)
            self.land_in(None, False)
        elif isinstance(error, BadPiece) and accuse:
            metrics.bad_pieces.add(1)
            metrics.peers_excluded.add(1, {"reason": "bad_piece"})
            excluded.add(peer_id)
            log.warning("peer %s sent a bad piece %d of %s: %s", peer_id, index, self._digest, error)
            self._node.report_later(peer_id, self._digest, error)
        elif isinstance(error, PeerUnreachable):
            # Announced, but nobody answers at its URL (dead, or never there): not for this blob.
            self._exclude(peer_id, "unreachable")
            log.info("peer %s unreachable for piece %d of %s: %s", peer_id, index, self._digest, error)
        else:
            # Busy, not there yet, or slow: rest this peer a moment; a stalled one for longer.
            stalled = isinstance(error, TimeoutError)
            backoff[peer_id] = self._loop.time() + (self._config.stall_timeout if stalled else 0.5)
            metrics.peers_excluded.add(1, {"reason": "stalled" if stalled else "unavailable"})
            log.info("peer %s failed piece %d of %s: %r", peer_id, index, self._digest, error)
        return bool(run.pieces)

    async def _fetch_run(
        self,
        holder: PeerHolding,
        indexes: list[int],
        hashes: dict[int, str],
        arrived: Arrived,
    ) -> Run:
        assert self.size is not None
        wanted = [WantedPiece(i, *piece_bounds(i, self.size, self._piece_size), hashes[i]) for i in indexes]
        if self._buffers is None:
            # Enough for the window, the pieces waiting their turn and the fill's two in hand.
            self._buffers = Buffers(self._piece_size, keep=2 * self._config.window + 2)
        return await self._node.fetch_run(holder.peer.url, self._digest, wanted, self._buffers, self._land, arrived)

    async def _rejoin(self) -> str:
        """After a stall: "seed" (we hold the lease now), "peer" (someone usable holds it), or
        "origin" (nobody turned up within stall_timeout)."""
        deadline = self._loop.time() + self._config.stall_timeout
        while True:
            # Peers first: a seed that just completed released its lease, and taking it over
            # would fetch from the origin what a peer already has.
            if self._consistent(await self._node.holders(self._digest, self._excluded)):
                return "peer"
            if await self._try_lease():
                return "seed"
            if self._loop.time() >= deadline:
                return "origin"
            await asyncio.sleep(self._config.poll_interval)

    async def _try_lease(self) -> bool:
        try:
            lease = await self._node.tracker.lease(self._digest, self._config.peer_id, self._config.lease_ttl)
        except TrackerError:
            return False
        return lease.granted


class _ThreadedBody:
    """An origin body as a fill stream: piece-sized reads on a worker thread (`readinto`, GIL
    released), so a seed's bytes cost the kernel's copy and no event-loop work per socket read."""

    def __init__(
        self, body: RangeBody, size: int, chunk: int, buffers: Buffers, threads: Executor, skip: int = 0
    ) -> None:
        """`skip`: bytes at the body's start that are read and dropped first (`size` excludes them)."""
        self.size: int | None = size
        self._skip = skip
        self._body = body
        self._chunk = chunk
        self._buffers = buffers
        self._threads = threads

    def __aiter__(self) -> AsyncIterator[bytearray]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytearray]:
        loop = asyncio.get_running_loop()
        while self._skip > 0:
            scratch = self._buffers.take(min(self._chunk, self._skip))
            try:
                await loop.run_in_executor(self._threads, _read_exactly, self._body, scratch)
            finally:
                self._buffers.give(scratch)
            self._skip -= len(scratch)
        remaining = self.size or 0
        while remaining > 0:
            buffer = self._buffers.take(min(self._chunk, remaining))
            await loop.run_in_executor(self._threads, _read_exactly, self._body, buffer)
            remaining -= len(buffer)
            yield buffer


def _read_exactly(body: RangeBody, buffer: bytearray) -> None:
    with memoryview(buffer) as view:
        done = 0
        while done < len(buffer):
            count = body.readinto(view[done:])
            if not count:
                raise PieceError(f"the origin closed after {done} of {len(buffer)} bytes of a chunk")
            done += count


def _finished(inflight: dict[int, tuple[asyncio.Task[Run], str]]) -> list[tuple[asyncio.Task[Run], str, list[int]]]:
    """The runs that ended, each with its pieces, taken out of `inflight`."""
    runs: dict[asyncio.Task[Run], tuple[str, list[int]]] = {}
    for index, (task, peer_id) in list(inflight.items()):
        if task.done():
            del inflight[index]
            runs.setdefault(task, (peer_id, []))[1].append(index)
    return [(task, peer_id, sorted(indexes)) for task, (peer_id, indexes) in runs.items()]


def _runs(chosen: list[tuple[int, str]], run_pieces: int) -> list[tuple[str, list[int]]]:
    """(piece, peer) choices as requests: consecutive pieces for one peer go in one run."""
    by_peer: dict[str, list[int]] = {}
    for index, peer_id in chosen:
        by_peer.setdefault(peer_id, []).append(index)
    runs: list[tuple[str, list[int]]] = []
    for peer_id, indexes in by_peer.items():
        current: list[int] = []
        for index in sorted(indexes):
            if current and (index != current[-1] + 1 or len(current) == run_pieces):
                runs.append((peer_id, current))
                current = []
            current.append(index)
        if current:
            runs.append((peer_id, current))
    return runs
