"""The tracker's HTTP API (JSON under /v1) as a Starlette app over a `TrackerStore`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from p2p import metrics
from p2p.tracker import validate
from p2p.tracker.auth import BearerTokenAuth
from p2p.tracker.models import PeerInfo
from p2p.tracker.ranking import rank_peers
from p2p.tracker.readiness import Readiness, latest_agreed, readiness
from p2p.tracker.store import TrackerStore
from p2p.tracker.validate import InvalidField

log = logging.getLogger("p2p.tracker")


@dataclass(frozen=True)
class TrackerConfig:
    token: str | None = None  # None: no bearer check (mutual TLS or a trusted network must guard it)
    max_lease_ttl: float = 600.0
    exclusion_ttl: float = 600.0  # how long a peer reported for a bad piece is left out of lookups
    max_body_bytes: int = 8 * 1024 * 1024
    sweep_interval: float = 30.0


class _BodyTooLarge(Exception):
    pass


Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _guarded(handler: Handler) -> Handler:
    """Turns validation failures into a 400 naming the field, and oversized bodies into a 413."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except InvalidField as exc:
            return _error(400, exc.message, exc.field)
        except _BodyTooLarge:
            return _error(413, "request body too large", "body")

    return run


async def _json_body(request: Request) -> Any:
    limit: int = request.app.state.config.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        raise _BodyTooLarge()
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _BodyTooLarge()
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidField("body", "must be valid JSON") from exc


def _store(request: Request) -> TrackerStore:
    store: TrackerStore = request.app.state.store
    return store


async def announce(request: Request) -> Response:
    body = validate.announce(await _json_body(request))
    store = _store(request)
    registration = await store.register_peer(body.peer)
    await store.put_holdings(body.peer.id, registration.session, body.blobs)
    for blob in body.blobs:
        if blob.complete:  # the seed finished: whoever waits may now fetch from peers
            await store.release_lease(blob.digest, body.peer.id)
    return JSONResponse({"accepted": len(body.blobs), "known": registration.was_live})


async def withdraw(request: Request) -> Response:
    body = validate.withdraw(await _json_body(request))
    await _store(request).remove_holdings(body.peer_id, body.digests)
    return JSONResponse({"withdrawn": len(body.digests)})


async def heartbeat(request: Request) -> Response:
    peer = validate.heartbeat(await _json_body(request))
    registration = await _store(request).register_peer(peer)
    # known=false: the tracker forgot this peer (expiry or restart); it must announce everything again.
    return JSONResponse({"known": registration.was_live})


async def lookup(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    query = validate.lookup(request.query_params, request.query_params.getlist("exclude"))
    holdings = await _store(request).holders(digest)
    ranked = rank_peers(holdings, query.zone, set(query.exclude), query.limit, query.piece)
    return JSONResponse({"digest": digest, "peers": [h.to_wire() for h in ranked]})


async def put_pieces(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    body = validate.pieces(await _json_body(request))
    store = _store(request)
    if await store.lease_holder(digest) != body.peer_id:
        return _error(403, "only the seed (the lease holder) may publish piece hashes", "peer_id")
    conflict = await store.put_piece_hashes(digest, body.piece_size, body.size, body.hashes)
    if conflict is not None:
        metrics.tracker_piece_hash_conflicts.add(1)
        log.warning(
            "rejected piece hash from %s for %s: %s is %s, offered %s",
            body.peer_id, digest, conflict.field, conflict.stored, conflict.offered,
        )
        return _error(409, f"conflicts with the first published value {conflict.stored}", conflict.field)
    return JSONResponse({"stored": len(body.hashes)})


async def get_pieces(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    record = await _store(request).get_piece_hashes(digest)
    if record is None:
        return _error(404, "no piece hashes published for this digest")
    return JSONResponse(record.to_wire())


async def acquire_lease(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    body = validate.lease(await _json_body(request), request.app.state.config.max_lease_ttl)
    lease, renewed = await _store(request).acquire_lease(digest, body.peer_id, body.ttl)
    result = "waited" if not lease.granted else ("renewed" if renewed else "granted")
    metrics.tracker_leases.add(1, {"result": result})
    return JSONResponse(lease.to_wire())


async def release_lease(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    peer_id = validate.release(await _json_body(request))
    return JSONResponse({"released": await _store(request).release_lease(digest, peer_id)})


async def report(request: Request) -> Response:
    body = validate.report(await _json_body(request))
    metrics.tracker_bad_piece_reports.add(1)
    fresh = await _store(request).exclude_peer(body.peer_id, request.app.state.config.exclusion_ttl)
    if fresh:
        metrics.tracker_peers_excluded.add(1)
    log.warning(
        "peer %s excluded: %s reported a bad piece of %s (%s)", body.peer_id, body.reporter, body.digest, body.reason
    )
    return JSONResponse({"excluded": True, "ttl": request.app.state.config.exclusion_ttl})


async def offer_catalog(request: Request) -> Response:
    name = validate.catalog_name(request.path_params["name"])
    serial = validate.serial(request.path_params["serial"])
    body = validate.catalog_offer(await _json_body(request))
    store = _store(request)
    if await store.get_peer(body.peer_id) is None:
        return _error(409, "unknown or expired peer: heartbeat first", "peer_id")
    await store.put_catalog(name, serial, body.peer_id, body.digests)
    return JSONResponse({"name": name, "serial": serial, "digests": len(body.digests)})


async def catalog_readiness(request: Request) -> Response:
    name = validate.catalog_name(request.query_params.get("catalog"), "catalog")
    raw_serial = request.query_params.get("serial")
    serial = validate.serial(raw_serial) if raw_serial is not None else None
    store = _store(request)
    live = await store.live_peers()
    agreed = latest_agreed(await store.catalog_lists(name), {peer.id for peer in live}, serial)
    if agreed is None:
        wanted = f"{name} serial {serial}" if serial is not None else name
        return _error(404, f"no live peer has offered catalog {wanted}", "catalog")
    result = await _readiness(store, agreed.digests, live)
    metrics.tracker_catalog_ready_share.set(result.overall.share, {"catalog": name, "serial": str(agreed.serial)})
    return JSONResponse({"catalog": name, "serial": agreed.serial, "offered_by": len(agreed.voters), **result.to_wire()})


async def digests_readiness(request: Request) -> Response:
    digests = validate.readiness_digests(await _json_body(request))
    store = _store(request)
    return JSONResponse((await _readiness(store, digests, await store.live_peers())).to_wire())


async def _readiness(store: TrackerStore, digests: tuple[str, ...], live: list[PeerInfo]) -> Readiness:
    complete = {d: {h.peer.id for h in await store.holders(d) if h.complete} for d in digests}
    return readiness(digests, live, complete)


async def _observe_catalogs(store: TrackerStore) -> None:
    """The readiness gauge for each catalog's newest serial, refreshed by the sweep."""
    live = await store.live_peers()
    for name in await store.catalog_names():
        agreed = latest_agreed(await store.catalog_lists(name), {peer.id for peer in live}, None)
        if agreed is not None:
            share = (await _readiness(store, agreed.digests, live)).overall.share
            metrics.tracker_catalog_ready_share.set(share, {"catalog": name, "serial": str(agreed.serial)})


async def stats(request: Request) -> Response:
    store = _store(request)
    counts = await store.stats()
    return JSONResponse({"store": store.kind, **asdict(counts)})


async def healthz(request: Request) -> Response:
    ping = getattr(_store(request), "ping", None)
    if ping is not None:
        try:
            await ping()
        except Exception as exc:  # noqa: BLE001 - any store failure means "not healthy"
            return _error(503, f"store unavailable: {exc}")
    return JSONResponse({"ok": True})


async def _sweep_forever(store: TrackerStore, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await store.sweep()
            metrics.tracker_peers_known.set((await store.stats()).peers)
            await _observe_catalogs(store)
        except Exception:  # noqa: BLE001 - a failed sweep must not stop the next one
            log.exception("tracker sweep failed")


def create_app(store: TrackerStore, config: TrackerConfig, metrics_endpoint: Handler | None = None) -> Starlette:
    """`metrics_endpoint`: GET /metrics, handed in by whoever installed the OpenTelemetry SDK
    (registry_mirror's CLI); outside /v1, so Prometheus needs no tracker token."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_forever(store, config.sweep_interval))
        try:
            yield
        finally:
            sweeper.cancel()
            await store.close()

    routes = [
        Route("/v1/announce", _guarded(announce), methods=["POST"]),
        Route("/v1/withdraw", _guarded(withdraw), methods=["POST"]),
        Route("/v1/heartbeat", _guarded(heartbeat), methods=["POST"]),
        Route("/v1/peers/{digest}", _guarded(lookup), methods=["GET"]),
        Route("/v1/pieces/{digest}", _guarded(put_pieces), methods=["PUT"]),
        Route("/v1/pieces/{digest}", _guarded(get_pieces), methods=["GET"]),
        Route("/v1/lease/{digest}", _guarded(acquire_lease), methods=["POST"]),
        Route("/v1/lease/{digest}/release", _guarded(release_lease), methods=["POST"]),
        Route("/v1/report", _guarded(report), methods=["POST"]),
        Route("/v1/catalogs/{name}/{serial}", _guarded(offer_catalog), methods=["PUT"]),
        Route("/v1/readiness", _guarded(catalog_readiness), methods=["GET"]),
        Route("/v1/readiness", _guarded(digests_readiness), methods=["POST"]),
        Route("/v1/stats", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if metrics_endpoint is not None:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    middleware = [Middleware(BearerTokenAuth, token=config.token)] if config.token else []
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.store = store
    app.state.config = config
    return app
