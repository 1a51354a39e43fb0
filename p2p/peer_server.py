"""The peer listener: serves byte ranges of cached blobs and the verified pieces of fills in
progress to other mirrors, under an upload cap and a bandwidth cap. Optionally hosts the
embedded tracker under /tracker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from http_limits.errors import EXCEPTION_HANDLERS, error_response
from http_limits.ratelimit import TokenBucket
from nvme_cache import (
    BlobNotFound,
    CacheError,
    Digest,
    FileSegment,
    FillFailed,
    FillUnavailable,
    InvalidDigest,
    RangeNotSatisfiable,
    send_segment,
    sender_of,
)
from oci import parse_range
from p2p import metrics
from p2p.node import P2PNode
from p2p.piece_client import PIECE_PATH

log = logging.getLogger("p2p.peer_server")

_PACE_SLICES_PER_SECOND = 8
_PACE_SLICE_MIN = 64 * 1024  # below this a slice costs more in wake-ups than it smooths
_PACE_SLICE_MAX = 4 * 1024 * 1024


def create_peer_app(node: P2PNode, tracker_app: ASGIApp | None = None) -> Starlette:
    config = node.config
    # A burst of one second of rate: a 1 MiB chunk passes at once under any sane cap.
    bucket = TokenBucket(config.upload_bandwidth, config.upload_bandwidth) if config.upload_bandwidth > 0 else None

    async def serve_range(request: Request) -> Response | _PieceResponse:
        if not await node.peer_authorized(request.headers.get("authorization", "")):
            return error_response(401, "unauthorized", "authorization")
        try:
            digest = Digest.parse(request.path_params["digest"])
        except InvalidDigest as exc:
            return error_response(400, f"invalid digest: {exc}", "digest")
        wanted = parse_range(request.headers.get("range"), None)
        if wanted is None or wanted.end is None:
            return error_response(400, "a single Range bytes=a-b is required", "range")
        start, end = wanted.start, wanted.end + 1
        if node.uploads_active >= config.max_uploads:
            metrics.uploads_refused.add(1)
            return error_response(503, "too many uploads", headers={"Retry-After": "1"})
        try:
            size, body = await _open_range(node, digest, start, end)
        except (BlobNotFound, FillUnavailable):
            return error_response(404, "not available here")
        except RangeNotSatisfiable as exc:
            return error_response(416, "range beyond the blob", "range", {"Content-Range": f"bytes */{exc.size}"})
        except CacheError as exc:  # e.g. a blob the store just found corrupt: another peer has it
            log.info("piece of %s not served: %s", digest, exc)
            return error_response(404, "not available here")
        headers = {"Content-Range": f"bytes {start}-{end - 1}/{size}", "Content-Length": str(end - start)}
        return _PieceResponse(headers, _upload(node, body, bucket))

    routes: list[Route | Mount] = [Route(PIECE_PATH + "{digest}", serve_range, methods=["GET"])]
    lifespan = None
    if tracker_app is not None:
        routes.append(Mount("/tracker", app=tracker_app))
        lifespan = _tracker_lifespan(tracker_app)
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)


async def _open_range(
    node: P2PNode, digest: Digest, start: int, end: int
) -> tuple[int, AsyncIterator[bytes | FileSegment]]:
    info = node.store.stat(digest)
    if info is not None:
        if end > info.size:
            raise RangeNotSatisfiable(start, info.size)
        return info.size, node.store.get(digest).segments(start, end)
    progress = node.store.progress(digest)
    if progress is None or progress.size is None:
        raise BlobNotFound(str(digest))
    if end > progress.size:
        raise RangeNotSatisfiable(start, progress.size)
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
    node: P2PNode, body: AsyncIterator[bytes | FileSegment], bucket: TokenBucket | None
) -> AsyncIterator[bytes | FileSegment]:
    node.uploads_active += 1
    sent = 0
    try:
        async for item in body:
            for part in _paced(item, bucket):
                count = part.count if isinstance(part, FileSegment) else len(part)
                if bucket is not None and (wait := bucket.take_with_debt(count)) > 0:
                    metrics.upload_throttled_seconds.add(wait)
                    await asyncio.sleep(wait)  # one bucket for every upload: their sum keeps the cap
                sent += count
                yield part
        metrics.pieces_served.add(1)
    finally:
        node.uploads_active -= 1
        metrics.peer_bytes_served.add(sent)
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


def _paced(item: bytes | FileSegment, bucket: TokenBucket | None) -> Iterator[bytes | FileSegment]:
    """Under a cap, an item in slices of an eighth of a second's worth: the bytes keep flowing at
    the capped rate. Taken whole, a 32 MiB run at 10 MB/s would wait seconds before its first byte,
    and the downloader would drop the peer as stalled."""
    if bucket is None:
        yield item
        return
    step = min(max(int(bucket.rate / _PACE_SLICES_PER_SECOND), _PACE_SLICE_MIN), _PACE_SLICE_MAX)
    if isinstance(item, FileSegment):
        for offset in range(0, item.count, step):
            yield FileSegment(item.fd, item.offset + offset, min(step, item.count - offset))
        return
    for offset in range(0, len(item), step):
        yield item[offset : offset + step]


def _tracker_lifespan(tracker_app: ASGIApp) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context = getattr(getattr(tracker_app, "router", None), "lifespan_context", None)
        if context is None:
            yield
            return
        async with context(tracker_app):
            yield

    return lifespan
