"""Async client for the tracker's /v1 API; every failure surfaces as `TrackerError`."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from p2p import metrics
from p2p.errors import TrackerError
from p2p.tracker.models import BlobState, Lease, PeerHolding, PeerInfo, PieceHashes


class TrackerClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            verify=ssl_context if ssl_context is not None else True,
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> TrackerClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

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
                response = await self._http.request(method, path, json=body, params=params)
            except httpx.HTTPError as exc:
                raise TrackerError(f"{operation}: {type(exc).__name__}: {exc}") from exc
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if response.status_code >= 400 and response.status_code not in allow:
                detail = payload if isinstance(payload, dict) else {}
                raise TrackerError(
                    f"{operation}: {detail.get('error', response.reason_phrase)}",
                    status=response.status_code,
                    field=detail.get("field"),
                )
            outcome = "ok"
            return response.status_code, payload
        finally:
            elapsed = time.perf_counter() - started
            metrics.tracker_request_duration.record(elapsed, {"operation": operation, "outcome": outcome})

    async def announce(self, peer: PeerInfo, blobs: Iterable[BlobState]) -> bool:
        """Publishes the peer's full state for each blob; returns whether the tracker already knew the peer."""
        body = {"peer": peer.to_wire(), "blobs": [b.to_wire() for b in blobs]}
        _, payload = await self._call("announce", "POST", "/v1/announce", body)
        return bool(payload["known"])

    async def withdraw(self, peer_id: str, digests: Sequence[str]) -> None:
        await self._call("withdraw", "POST", "/v1/withdraw", {"peer_id": peer_id, "digests": list(digests)})

    async def heartbeat(self, peer: PeerInfo) -> bool:
        """False when the tracker had forgotten this peer: announce everything again."""
        _, payload = await self._call("heartbeat", "POST", "/v1/heartbeat", {"peer": peer.to_wire()})
        return bool(payload["known"])

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
        return [PeerHolding.from_wire(p) for p in payload["peers"]]

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
        return None if status == 404 else PieceHashes.from_wire(payload)

    async def lease(self, digest: str, peer_id: str, ttl: float) -> Lease:
        """Asks to be the seed; also renews a lease this peer holds."""
        _, payload = await self._call("lease", "POST", f"/v1/lease/{digest}", {"peer_id": peer_id, "ttl": ttl})
        return Lease.from_wire(payload)

    async def release(self, digest: str, peer_id: str) -> bool:
        _, payload = await self._call("release", "POST", f"/v1/lease/{digest}/release", {"peer_id": peer_id})
        return bool(payload["released"])

    async def reset_pieces(self, digest: str, peer_id: str) -> bool:
        """Withdraws the piece hashes this peer published for `digest` (its fill failed verification)."""
        _, payload = await self._call("reset_pieces", "POST", f"/v1/pieces/{digest}/reset", {"peer_id": peer_id})
        return bool(payload["reset"])

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
        return bool(payload["excluded"])

    async def whoami(self, token: str | None = None) -> str | None:
        """The peer id `token` (default: this client's credentials) proves; None for the shared
        token or no auth. TrackerError with status 401 when refused."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        try:
            response = await self._http.get("/v1/whoami", headers=headers)
        except httpx.HTTPError as exc:
            raise TrackerError(f"whoami: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.tracker_request_duration.record(time.perf_counter() - started, {"operation": "whoami"})
        if response.status_code != 200:
            raise TrackerError("whoami: refused", status=response.status_code, field="authorization")
        peer_id = response.json().get("peer_id")
        return None if peer_id is None else str(peer_id)

    async def offer_catalog(self, name: str, serial: int, peer_id: str, digests: Sequence[str]) -> None:
        """Tell the tracker which blobs catalog (name, serial) has (this peer verified it)."""
        body = {"peer_id": peer_id, "digests": list(digests)}
        await self._call("offer_catalog", "PUT", f"/v1/catalogs/{name}/{serial}", body)

    async def catalog_readiness(self, name: str, serial: int | None = None) -> dict[str, Any] | None:
        """Readiness of a catalog's `serial` (default: the newest offered); None when unknown."""
        params = {"catalog": name} | ({"serial": str(serial)} if serial is not None else {})
        status, payload = await self._call("readiness", "GET", "/v1/readiness", params=params, allow=(404,))
        return None if status == 404 else dict(payload)

    async def stats(self) -> dict[str, Any]:
        _, payload = await self._call("stats", "GET", "/v1/stats")
        return dict(payload)
