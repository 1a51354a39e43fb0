"""Async client for the tracker's /v1 API; every failure surfaces as `TrackerError`.

On aiohttp, not httpx: a downloading mirror asks the tracker every poll interval and announces
its pieces as they land, so in a swarm the client's cost per request is CPU the transfers lack.
One `peers` lookup costs about 0.24 ms of client CPU on aiohttp against 1.0 ms on httpx
(`bench/tracker_client.py`, both in one run; figures in docs/architecture.md).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from p2p import metrics
from p2p.errors import TrackerError
from p2p.tracker.models import BlobState, Lease, PeerHolding, PeerInfo, PieceHashes

# A tracker answer is a few KiB; the largest, every piece hash of a 100 GiB blob, about 2 MiB.
# Anything bigger is not read into memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_FAILURES = (aiohttp.ClientError, TimeoutError, OSError)
# Idle connections are dropped before a server would close them (uvicorn: after 5 s), so a request
# rarely meets one the server just closed; when it does, it is sent once more on a new one.
_KEEPALIVE_S = 2.0
# A whole request may take this many `timeout`s: sock_read restarts with every byte, so without a
# total a tracker (or a proxy) trickling its answer would hold every fill that asks it for ever.
_TOTAL_TIMEOUTS = 4
T = TypeVar("T")


class TrackerClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(
            total=timeout * _TOTAL_TIMEOUTS, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TrackerClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, so it binds to the loop that runs the calls.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, keepalive_timeout=_KEEPALIVE_S),
                timeout=self._timeout,
                headers=self.headers,
            )
        return self._session

    async def _send(
        self, method: str, path: str, body: Any = None, params: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str, Any]:
        """Status, reason and the decoded JSON answer (None when it is not JSON). Redirects are not
        followed: a tracker that answers elsewhere is answering wrongly."""
        try:
            return await self._send_once(method, path, body, params, headers)
        except aiohttp.ServerDisconnectedError:  # a kept-alive connection the server had closed
            if method in ("GET", "HEAD"):
                raise  # aiohttp itself sends those once more on a new connection
            return await self._send_once(method, path, body, params, headers)

    async def _send_once(
        self, method: str, path: str, body: Any, params: Any, headers: Mapping[str, str] | None
    ) -> tuple[int, str, Any]:
        async with self._http().request(
            method, self.base_url + path, json=body, params=params, headers=headers, allow_redirects=False
        ) as response:
            raw = bytearray()
            async for chunk in response.content.iter_any():
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    raise TrackerError(f"{method} {path}: answer larger than {MAX_ANSWER_BYTES} bytes")
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = None
            return response.status, response.reason or "", payload

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        body: Any = None,
        params: Any = None,
        allow: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        outcome = "error"
        try:
            try:
                status, reason, payload = await self._send(method, path, body, params)
            except _FAILURES as exc:
                raise TrackerError(f"{operation}: {type(exc).__name__}: {exc}") from exc
            if not 200 <= status < 300 and status not in allow:
                detail = payload if isinstance(payload, dict) else {}
                raise TrackerError(
                    f"{operation}: {detail.get('error', reason)}",
                    status=status,
                    field=detail.get("field"),
                )
            outcome = "ok"
            return status, payload
        finally:
            elapsed = time.perf_counter() - started
            metrics.tracker_request_duration.record(elapsed, {"operation": operation, "outcome": outcome})

    async def announce(self, peer: PeerInfo, blobs: Iterable[BlobState]) -> bool:
        """Publishes the peer's full state for each blob; returns whether the tracker already knew the peer."""
        body = {"peer": peer.to_wire(), "blobs": [b.to_wire() for b in blobs]}
        _, payload = await self._call("announce", "POST", "/v1/announce", body)
        return _parsed("announce", payload, lambda answer: bool(answer["known"]))

    async def withdraw(self, peer_id: str, digests: Sequence[str]) -> None:
        await self._call("withdraw", "POST", "/v1/withdraw", {"peer_id": peer_id, "digests": list(digests)})

    async def heartbeat(self, peer: PeerInfo) -> bool:
        """False when the tracker had forgotten this peer: announce everything again."""
        _, payload = await self._call("heartbeat", "POST", "/v1/heartbeat", {"peer": peer.to_wire()})
        return _parsed("heartbeat", payload, lambda answer: bool(answer["known"]))

    async def peers(
        self,
        digest: str,
        zone: str = "",
        exclude: Sequence[str] = (),
        limit: int | None = None,
        piece: int | None = None,
    ) -> list[PeerHolding]:
        params: list[tuple[str, str]] = [("exclude", e) for e in exclude]
        if piece is not None:
            params.append(("piece", str(piece)))
        if zone:
            params.append(("zone", zone))
        if limit is not None:
            params.append(("limit", str(limit)))
        _, payload = await self._call("peers", "GET", f"/v1/peers/{digest}", params=params)
        return _parsed("peers", payload, lambda answer: [PeerHolding.from_wire(p) for p in answer["peers"]])

    async def put_pieces(
        self, digest: str, peer_id: str, piece_size: int, hashes: Mapping[int, str], size: int | None = None
    ) -> None:
        body: dict[str, Any] = {
            "peer_id": peer_id,
            "piece_size": piece_size,
            "hashes": {str(i): h for i, h in hashes.items()},
        }
        if size is not None:
            body["size"] = size
        await self._call("put_pieces", "PUT", f"/v1/pieces/{digest}", body)

    async def get_pieces(self, digest: str) -> PieceHashes | None:
        status, payload = await self._call("get_pieces", "GET", f"/v1/pieces/{digest}", allow=(404,))
        return None if status == 404 else _parsed("get_pieces", payload, PieceHashes.from_wire)

    async def lease(self, digest: str, peer_id: str, ttl: float) -> Lease:
        """Asks to be the seed; also renews a lease this peer holds."""
        _, payload = await self._call("lease", "POST", f"/v1/lease/{digest}", {"peer_id": peer_id, "ttl": ttl})
        return _parsed("lease", payload, Lease.from_wire)

    async def release(self, digest: str, peer_id: str) -> bool:
        _, payload = await self._call("release", "POST", f"/v1/lease/{digest}/release", {"peer_id": peer_id})
        return _parsed("release", payload, lambda answer: bool(answer["released"]))

    async def reset_pieces(self, digest: str, peer_id: str) -> bool:
        """Withdraws the piece hashes this peer published for `digest` (its fill failed verification)."""
        _, payload = await self._call("reset_pieces", "POST", f"/v1/pieces/{digest}/reset", {"peer_id": peer_id})
        return _parsed("reset_pieces", payload, lambda answer: bool(answer["reset"]))

    async def report(
        self,
        reporter: str,
        peer_id: str,
        digest: str,
        reason: str,
        evidence: tuple[int, str, str] | None = None,
    ) -> bool:
        """Reports a bad piece; `evidence` (index, expected sha256, received sha256) shows it.
        Returns whether the peer is now left out of the digest's lookups."""
        body: dict[str, Any] = {"reporter": reporter, "peer_id": peer_id, "digest": digest, "reason": reason}
        if evidence is not None:
            body["piece"], body["expected"], body["received"] = evidence
        _, payload = await self._call("report", "POST", "/v1/report", body)
        return _parsed("report", payload, lambda answer: bool(answer["excluded"]))

    async def whoami(self, token: str | None = None) -> str | None:
        """The peer id `token` (default: this client's credentials) proves; None for the shared
        token or no auth. TrackerError with status 401 when refused."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        try:
            status, _, payload = await self._send("GET", "/v1/whoami", headers=headers)
        except _FAILURES as exc:
            raise TrackerError(f"whoami: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.tracker_request_duration.record(time.perf_counter() - started, {"operation": "whoami"})
        if status != 200:
            raise TrackerError("whoami: refused", status=status, field="authorization")
        peer_id = _parsed("whoami", payload, lambda answer: answer.get("peer_id"))
        return None if peer_id is None else str(peer_id)

    async def offer_catalog(self, name: str, serial: int, peer_id: str, digests: Sequence[str]) -> None:
        """Tell the tracker which blobs catalog (name, serial) has (this peer verified it)."""
        body = {"peer_id": peer_id, "digests": list(digests)}
        await self._call("offer_catalog", "PUT", f"/v1/catalogs/{name}/{serial}", body)

    async def catalog_readiness(self, name: str, serial: int | None = None) -> dict[str, Any] | None:
        """Readiness of a catalog's `serial` (default: the newest offered); None when unknown."""
        params = {"catalog": name} | ({"serial": str(serial)} if serial is not None else {})
        status, payload = await self._call("readiness", "GET", "/v1/readiness", params=params, allow=(404,))
        return None if status == 404 else _parsed("readiness", payload, dict)

    async def stats(self) -> dict[str, Any]:
        _, payload = await self._call("stats", "GET", "/v1/stats")
        return _parsed("stats", payload, dict)


def _parsed(operation: str, payload: Any, parse: Callable[[Any], T]) -> T:
    """The answer as `parse` reads it; an answer that is not what the tracker sends (not JSON,
    a field missing or of another type) is a TrackerError, like any other failed request."""
    try:
        return parse(payload)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TrackerError(f"{operation}: malformed answer ({type(exc).__name__}: {exc})") from exc
