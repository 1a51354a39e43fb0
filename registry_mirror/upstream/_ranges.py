"""Blob bodies from the origin by byte range, received on fill worker threads.

Why not aiohttp here (it carries every other upstream call): a cold byte received through the
event loop costs a Python wake-up and a join per socket read, and the loop is the one thread
that also serves every client. Here the request is sent and the body read with the standard
library's blocking `http.client` on a worker thread, straight into the fill's reused buffer
(`readinto`: one copy from the kernel, GIL released while it waits). Measured side by side in
docs/architecture.md.

Everything else stays with `UpstreamClient`: the token (its `UpstreamAuth`, one per upstream),
the error table (`error_for_status`), TLS settings and timeouts. Redirects are followed here by
the same rule: `Authorization` never reaches another origin (S3, a CDN).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urljoin, urlsplit

from yarl import URL

from nvme_cache.connections import ConnectionPool, Target
from nvme_cache.threads import worker_pool
from oci import parse_content_range
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.telemetry import upstream_span
from registry_mirror.upstream._client import (
    ERROR_BODY_MAX_BYTES,
    MAX_REDIRECTS,
    USER_AGENT,
    UpstreamClient,
    UpstreamUnavailable,
    error_for_status,
)

# Requests are sent and their headers read here; bodies are read on the fill's own threads.
_REQUESTS = worker_pool("origin-request", 32)

Throttle = Callable[[int], None]  # called on the receiving thread after each read; may sleep

# A slow origin (a CDN's per-connection cap, a WAN link) delivers a few KiB per wake-up: without
# a low-water mark the receiving thread wakes, polls and reads once per packet. With SO_RCVLOWAT
# the kernel wakes it once this much has arrived (bench/datapath.py "capped", bench/p2p_swarm.py
# no-p2p; figures in docs/architecture.md).
_LOW_WATER = 256 * 1024
# The mark never asks for more than the origin sends in an eighth of the read timeout at the rate
# measured so far: a slow but live origin must not look like a hung one.
_TIMEOUT_SHARE = 8
_LOW_WATER_MIN = 16 * 1024  # below this a mark saves little
# Body bytes the socket never sees again: http.client's reader buffers up to 8 KiB and TLS holds
# back at most one record (16 KiB and its header). A mark above what is still to come would wait
# for bytes that never arrive, so the last reads of a body go without one.
_UNSEEN_MAX = 8 * 1024 + 17 * 1024


class OriginBody:
    """One open response (nvme_cache.RangeBody): 206 for the range asked, or 200 for the blob."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        target: Target,
        pool: ConnectionPool,
        throttle: Throttle | None,
    ) -> None:
        self._response = response
        self._connection = connection
        self._target = target
        self._pool = pool
        self._throttle = throttle
        self._low_water = 1  # the kernel's default
        self._rate = 0.0  # bytes/s of the last read
        self._reads = [0, 0]  # reads without and with a mark, counted at close (an add per read costs)
        self.ranged = response.status == 206
        length = response.getheader("Content-Length")
        if self.ranged:
            answered = parse_content_range(response.getheader("Content-Range"))
            if answered is None:
                raise UpstreamUnavailable(206, None, "a 206 without a usable Content-Range")
            self.start = answered.start
            self.total = answered.size
            if length is not None and int(length) != answered.length:
                raise UpstreamUnavailable(206, None, "Content-Length and Content-Range disagree")
        else:
            self.start = 0
            self.total = int(length) if length is not None and length.isdigit() else None

    def readinto(self, buffer: memoryview) -> int:
        self._set_low_water(len(buffer))
        started = time.monotonic()
        count = self._response.readinto(buffer)
        if count:
            self._rate = count / max(time.monotonic() - started, 1e-6)
            self._reads[self._low_water > 1] += 1
        if self._throttle is not None and count:
            self._throttle(count)
        return count

    def _set_low_water(self, wanted: int) -> None:
        """The next read of `wanted` bytes wakes once per mark: at most `wanted`, what the last
        read's rate brings in a share of the read timeout, and only while more than a mark's
        worth is still to come after this read. The body's tail goes without one."""
        sock = self._connection.sock
        if sock is None:
            return
        remaining = self._response.length
        low = min(_LOW_WATER, wanted, int(self._rate * self._pool.read_timeout() / _TIMEOUT_SHARE))
        if remaining is None or remaining < wanted + low + _UNSEEN_MAX:
            low = 1
        elif low >= _LOW_WATER_MIN:
            # A mark over half the receive buffer makes the kernel grow the buffer and clamp the
            # TCP window to the mark (tcp_set_rcvlowat): a capped or distant sender then stalls.
            # Under a quarter of what autotuning has given the connection so far it changes neither.
            low = min(low, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 4)
        if low < _LOW_WATER_MIN:
            low = 1
        if low != self._low_water:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, low)
            self._low_water = low

    def close(self) -> None:
        for marked, reads in enumerate(self._reads):
            if reads:
                metrics.origin_body_reads.add(reads, {"low_water": "yes" if marked else "no"})
        self._reads = [0, 0]
        if self._response.isclosed() and not self._response.will_close:
            self._pool.give_back(self._target, self._connection)  # read to its end: reusable
            return
        # A receiving thread may still be inside `readinto` (the fill failed or was cancelled):
        # http.client's buffered reader holds its lock for the whole read, and `close` would wait
        # for it on the event loop (up to read_timeout for a stalled origin). A shutdown ends
        # that read at once.
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()


class OriginRanges:
    """The origin as an nvme_cache.RangeSource for one blob."""

    source = "origin"

    def __init__(
        self,
        client: UpstreamClient,
        pool: ConnectionPool,
        repository: str,
        digest: str,
        upstream_name: str,
        *,
        slot: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None,
        throttle: Throttle | None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._repository = client.upstream_repository(repository)
        self._digest = digest
        self._upstream = upstream_name
        self._slot = slot
        self._throttle = throttle
        self.max_parallel = client.settings.max_parallel_ranges
        self.parallel_min_size = client.settings.parallel_range_min_size

    @contextlib.asynccontextmanager
    async def open(self, start: int, end: int | None) -> AsyncIterator[OriginBody]:
        async with contextlib.AsyncExitStack() as stack:
            if self._slot is not None:
                await stack.enter_async_context(self._slot())
            metrics.upstream_requests.add(1, {"kind": "blob", "upstream": self._upstream})
            stack.enter_context(upstream_span("upstream blob GET", upstream=self._upstream, digest=self._digest))
            body = await self._request(start, end)
            try:
                yield body
            finally:
                body.close()

    async def _request(self, start: int, end: int | None) -> OriginBody:
        url = self._client.blob_url(self._repository, self._digest)
        byte_range = _range_header(start, end)
        sent = await self._client.authorization(self._repository)
        challenged = False
        for _ in range(3):
            status, headers, body = await self._follow(url, byte_range, sent)
            if status == 401 and not challenged:
                challenged = True
                retry_with = await self._client.answer_challenge(self._repository, headers, sent)
                if retry_with is not None:
                    sent = retry_with
                    continue
            if status == 416 and start > 0:
                # A cold Range past the end of a blob whose size nobody knew yet: the fill starts
                # at byte 0 instead (the body says so in `start`), and the reader gets its 416
                # from the front end once the size is known, not a failed fill for every reader.
                start, end = 0, None if end is None else end - start
                byte_range = _range_header(start, end)
                continue
            if status == 416 and start == 0 and byte_range:
                byte_range = ""  # an empty blob has no byte 0: ask for it whole
                continue
            break
        if isinstance(body, OriginBody):
            return body
        raise error_for_status(status, headers.get("retry-after"), body, f"GET blob {self._digest}")

    async def _follow(
        self, url: str, byte_range: str, authorization: str | None
    ) -> tuple[int, dict[str, str], OriginBody | bytes]:
        """Redirects by hand: Authorization never reaches another origin (S3, a CDN), and every
        target passes the upstream's redirect policy first."""
        loop = asyncio.get_running_loop()
        origin = Target.of(url)
        for _ in range(MAX_REDIRECTS + 1):
            same_origin = Target.of(url) == origin
            status, headers, body = await loop.run_in_executor(
                _REQUESTS, self._send, url, byte_range, authorization if same_origin else None
            )
            location = headers.get("location") if status in (301, 302, 303, 307, 308) else None
            if not location:
                return status, headers, body
            url = urljoin(url, location)
            await self._client.check_redirect(URL(url, encoded=True))
        raise UpstreamUnavailable(None, None, f"more than {MAX_REDIRECTS} redirects")

    def _send(
        self, url: str, byte_range: str, authorization: str | None
    ) -> tuple[int, dict[str, str], OriginBody | bytes]:
        """Worker thread: one request; the open body (200/206) or the answer's headers and body."""
        target = Target.of(url)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if byte_range:
            headers["Range"] = byte_range
        if authorization:
            headers["Authorization"] = authorization
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection, response = self._pool.exchange(target, path, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamUnavailable(None, None, f"GET {path}: {type(exc).__name__}") from None
        if response.status in (200, 206):
            connection.sock.settimeout(self._pool.read_timeout())
            return response.status, {}, OriginBody(response, connection, target, self._pool, self._throttle)
        reply = {k.lower(): v for k, v in response.getheaders()}
        reply["www-authenticate"] = "\n".join(response.headers.get_all("WWW-Authenticate") or [])
        body = response.read(ERROR_BODY_MAX_BYTES)
        connection.close()
        return response.status, reply, body


def _range_header(start: int, end: int | None) -> str:
    """Bytes [start, end) (end None: to the end) as a Range header."""
    return f"bytes={start}-" + ("" if end is None else str(end - 1))
