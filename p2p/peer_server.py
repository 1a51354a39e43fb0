"""The peer listener: serves byte ranges of cached blobs and the verified pieces of fills in
progress to other mirrors, under an upload cap and a bandwidth cap. Optionally hosts the
embedded tracker under /tracker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nvme_cache import (
    BlobNotFound,
    CacheError,
    Digest,
    FileSegment,
    FillFailed,
    FillUnavailable,
    InvalidDigest,
    read_segment,
    send_segment,
    sender_of,
)
from p2p import metrics
from p2p.node import P2PNode
from p2p.piece_client import PIECE_PATH

log = logging.getLogger("p2p.peer_server")

_RANGE = re.compile(r"^bytes=(\d{1,15})-(\d{1,15})$")


class TokenBucket:
    """Bytes per second shared by every upload; 0 means unlimited."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: int) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= min(amount, self.rate):
                    self._tokens -= amount
                    return
                await asyncio.sleep((min(amount, self.rate) - self._tokens) / self.rate)


def create_peer_app(node: P2PNode, tracker_app: ASGIApp | None = None) -> Starlette:
    config = node.config
    bucket = TokenBucket(config.upload_bandwidth)

    async def serve_range(request: Request) -> Response | _PieceResponse:
        if not await node.peer_authorized(request.headers.get("authorization", "")):
            return JSONResponse({"error": "unauthorized"}, 401)
        try:
            digest = Digest.parse(request.path_params["digest"])
        except InvalidDigest as exc:
            return JSONResponse({"error": str(exc), "field": "digest"}, 400)
        match = _RANGE.match(request.headers.get("range", ""))
        if match is None:
            return JSONResponse({"error": "a single Range bytes=a-b is required", "field": "range"}, 400)
        start, end = int(match.group(1)), int(match.group(2)) + 1
        if end <= start:
            return JSONResponse({"error": "empty range", "field": "range"}, 400)
        if node.uploads_active >= config.max_uploads:
            metrics.uploads_refused.add(1)
            return JSONResponse({"error": "too many uploads"}, 503, headers={"Retry-After": "1"})
        try:
            size, body = await _open_range(node, digest, start, end)
        except (BlobNotFound, FillUnavailable):
            return JSONResponse({"error": "not available here"}, 404)
        except CacheError as exc:
            return JSONResponse({"error": str(exc)}, 416)
        headers = {"Content-Range": f"bytes {start}-{end - 1}/{size}", "Content-Length": str(end - start)}
        return _PieceResponse(headers, _upload(node, body, bucket, config.fault_corrupt_uploads))

    routes: list[Route | Mount] = [Route(PIECE_PATH + "{digest}", serve_range, methods=["GET"])]
    lifespan = None
    if tracker_app is not None:
        routes.append(Mount("/tracker", app=tracker_app))
        lifespan = _tracker_lifespan(tracker_app)
    return Starlette(routes=routes, lifespan=lifespan)


async def _open_range(
    node: P2PNode, digest: Digest, start: int, end: int
) -> tuple[int, AsyncIterator[bytes | FileSegment]]:
    info = node.store.stat(digest)
    if info is not None:
        if end > info.size:
            raise CacheError(f"range beyond {info.size} bytes")
        return info.size, node.store.get(digest).segments(start, end)
    progress = node.store.progress(digest)
    if progress is None or progress.size is None:
        raise BlobNotFound(str(digest))
    if end > progress.size:
        raise CacheError(f"range beyond {progress.size} bytes")
    # Only what is written: a downloader writes verified pieces only, a seed's bytes define them.
    body = node.store.written_segments(digest, start, end)
    if body is None:
        raise FillUnavailable(str(digest))
    return progress.size, body


class _PieceResponse:
    """206 with the piece's bytes; file segments go out with sendfile where the connection
    allows (plain HTTP peers), so a seed's upload costs the kernel's copy only."""

    def __init__(self, headers: dict[str, str], body: AsyncIterator[bytes | FileSegment]) -> None:
        self._headers = [(b"content-type", b"application/octet-stream")] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 206, "headers": self._headers})
        sender = sender_of(scope)
        try:
            async for item in self._body:
                if isinstance(item, FileSegment):
                    await send_segment(item, sender, send)
                else:
                    await send({"type": "http.response.body", "body": item, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, FillFailed) as exc:
            log.info("piece upload of %s ended early: %s", scope.get("path"), exc)  # the peer retries
        finally:
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                await aclose()


async def _upload(
    node: P2PNode, body: AsyncIterator[bytes | FileSegment], bucket: TokenBucket, corrupt: bool
) -> AsyncIterator[bytes | FileSegment]:
    node.uploads_active += 1
    first = True
    sent = 0
    try:
        async for item in body:
            count = item.count if isinstance(item, FileSegment) else len(item)
            await bucket.take(count)
            if corrupt and first and count:
                data = item if isinstance(item, bytes) else await asyncio.to_thread(read_segment, item)
                item = bytes([data[0] ^ 0xFF]) + data[1:]  # fault injection for tests
            first = False
            sent += count
            yield item
        metrics.pieces_served.add(1)
    finally:
        node.uploads_active -= 1
        metrics.peer_bytes_served.add(sent)
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


def _tracker_lifespan(tracker_app: ASGIApp):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context = getattr(getattr(tracker_app, "router", None), "lifespan_context", None)
        if context is None:
            yield
            return
        async with context(tracker_app):
            yield

    return lifespan
