"""The tracker's HTTP API (JSON under /v1) as a Starlette app over a `TrackerStore`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from http_limits.errors import EXCEPTION_HANDLERS, error_response
from http_limits.ratelimit import KeyedRateLimiter
from p2p import metrics
from p2p.tracker import validate
from p2p.tracker.auth import PEER_KEY, Credentials, PeerAuth
from p2p.tracker.models import PeerInfo
from p2p.tracker.ranking import rank_peers
from p2p.tracker.readiness import Readiness, latest_agreed, readiness
from p2p.tracker.store import TrackerStore
from p2p.tracker.validate import InvalidField

log = logging.getLogger("p2p.tracker")


@dataclass(frozen=True)
class TrackerConfig:
    token: str | None = None  # the shared token (any holder may act as any peer: the weaker mode)
    credentials: Credentials | None = None  # per-node identity; overrides `token` when set
    max_lease_ttl: float = 600.0
    exclusion_ttl: float = 600.0  # how long a peer is left out of one digest's lookups, and a report counts
    exclusion_reporters: int = 2  # distinct reporters that exclude a peer without a shown failed piece
    max_records_per_peer: int = 100_000  # digests one peer may hold records for
    report_rate: float = 1.0  # reports per second per reporter (a burst of report_burst first)
    report_burst: int = 30
    max_body_bytes: int = 8 * 1024 * 1024
    sweep_interval: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # for the report rate limit

    def auth(self) -> Credentials:
        return self.credentials if self.credentials is not None else Credentials(shared_token=self.token)


class _BodyTooLarge(Exception):
    pass


class _NotYours(Exception):
    def __init__(self, field: str, caller: str) -> None:
        self.field = field
        self.caller = caller


Handler = Callable[[Request], Awaitable[Response]]


_error = error_response  # the control APIs' one error body (http_limits.errors)


def _guarded(handler: Handler) -> Handler:
    """Turns validation failures into a 400 naming the field, and oversized bodies into a 413."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except InvalidField as exc:
            return _error(400, exc.message, exc.field)
        except _BodyTooLarge:
            return _error(413, "request body too large", "body")
        except _NotYours as exc:
            metrics.tracker_identity_refusals.add(1, {"route": request.url.path.split("/")[2]})
            return _error(403, f"authenticated as {exc.caller}: a peer may change only its own records", exc.field)

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


def _config(request: Request) -> TrackerConfig:
    config: TrackerConfig = request.app.state.config
    return config


def _own(request: Request, claimed: str, field: str) -> None:
    """A caller whose credential names a peer id may act only as that peer."""
    caller = request.scope.get("state", {}).get(PEER_KEY)
    if caller is not None and caller != claimed:
        raise _NotYours(field, caller)


async def announce(request: Request) -> Response:
    body = validate.announce(await _json_body(request))
    _own(request, body.peer.id, "peer.id")
    store = _store(request)
    registration = await store.register_peer(body.peer)
    refused = await store.put_holdings(
        body.peer.id, registration.session, body.blobs, _config(request).max_records_per_peer
    )
    if refused:
        metrics.tracker_records_refused.add(refused)
        log.warning(
            "peer %s is at its cap of %d records: %d refused",
            body.peer.id,
            _config(request).max_records_per_peer,
            refused,
        )
    for blob in body.blobs:
        if blob.complete:  # the seed finished: whoever waits may now fetch from peers
            await store.release_lease(blob.digest, body.peer.id)
    return JSONResponse({"accepted": len(body.blobs) - refused, "refused": refused, "known": registration.was_live})


async def withdraw(request: Request) -> Response:
    body = validate.withdraw(await _json_body(request))
    _own(request, body.peer_id, "peer_id")
    await _store(request).remove_holdings(body.peer_id, body.digests)
    return JSONResponse({"withdrawn": len(body.digests)})


async def heartbeat(request: Request) -> Response:
    peer = validate.heartbeat(await _json_body(request))
    _own(request, peer.id, "peer.id")
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
    _own(request, body.peer_id, "peer_id")
    store = _store(request)
    if await store.lease_holder(digest) != body.peer_id:
        return _error(403, "only the seed (the lease holder) may publish piece hashes", "peer_id")
    written = await store.put_piece_hashes(digest, body.peer_id, body.piece_size, body.size, body.hashes)
    conflict = written.conflict
    if conflict is not None:
        # Not evidence against anyone: the seed may have read a bad origin response. Its fill
        # fails verification and it resets the record (DELETE below).
        metrics.tracker_piece_hash_conflicts.add(1, {"outcome": "refused"})
        log.warning(
            "refused piece hash from %s for %s: %s is %s, it published %s before",
            body.peer_id,
            digest,
            conflict.field,
            conflict.offered,
            conflict.stored,
        )
        return _error(409, f"conflicts with the value {conflict.stored} this seed published", conflict.field)
    if written.replaced:
        metrics.tracker_piece_hash_conflicts.add(1, {"outcome": "replaced"})
        log.warning("piece hashes of %s from an earlier seed disagreed with %s's: replaced", digest, body.peer_id)
    return JSONResponse({"stored": len(body.hashes), "replaced": written.replaced})


async def reset_pieces(request: Request) -> Response:
    """A seed whose fill failed verification takes back what it published."""
    digest = validate.digest(request.path_params["digest"])
    peer_id = validate.release(await _json_body(request))
    _own(request, peer_id, "peer_id")
    reset = await _store(request).reset_piece_hashes(digest, peer_id)
    if reset:
        metrics.tracker_piece_hash_resets.add(1)
        log.warning("piece hashes of %s withdrawn by %s (its fill failed verification)", digest, peer_id)
    return JSONResponse({"reset": reset})


async def get_pieces(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    record = await _store(request).get_piece_hashes(digest)
    if record is None:
        return _error(404, "no piece hashes published for this digest")
    return JSONResponse(record.to_wire())


async def acquire_lease(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    body = validate.lease(await _json_body(request), _config(request).max_lease_ttl)
    _own(request, body.peer_id, "peer_id")
    lease, renewed = await _store(request).acquire_lease(digest, body.peer_id, body.ttl)
    result = "waited" if not lease.granted else ("renewed" if renewed else "granted")
    metrics.tracker_leases.add(1, {"result": result})
    return JSONResponse(lease.to_wire())


async def release_lease(request: Request) -> Response:
    digest = validate.digest(request.path_params["digest"])
    peer_id = validate.release(await _json_body(request))
    _own(request, peer_id, "peer_id")
    return JSONResponse({"released": await _store(request).release_lease(digest, peer_id)})


async def report(request: Request) -> Response:
    body = validate.report(await _json_body(request))
    _own(request, body.reporter, "reporter")
    config = _config(request)
    limiter: KeyedRateLimiter = request.app.state.report_limiter
    retry = limiter.check(body.reporter)
    if retry:
        metrics.tracker_bad_piece_reports.add(1, {"outcome": "rate_limited"})
        return _error(429, "too many reports from this peer", "reporter", {"Retry-After": str(retry)})
    store = _store(request)
    shown = await _shows_failed_piece(store, body)
    excluded = await store.report_peer(
        body.digest,
        body.peer_id,
        body.reporter,
        shown=shown,
        reporters_needed=config.exclusion_reporters,
        ttl=config.exclusion_ttl,
    )
    metrics.tracker_bad_piece_reports.add(1, {"outcome": "shown" if shown else "counted"})
    if excluded:
        metrics.tracker_peers_excluded.add(1)
        log.warning(
            "peer %s left out of %s for %.0fs: reported by %s (%s)",
            body.peer_id,
            body.digest,
            config.exclusion_ttl,
            body.reporter,
            body.reason,
        )
    return JSONResponse({"accepted": True, "shown": shown, "excluded": excluded, "ttl": config.exclusion_ttl})


async def _shows_failed_piece(store: TrackerStore, body: validate.ReportRequest) -> bool:
    """The report names a piece the accused announced, the hash the reporter checked it against is
    the one published now (not one since withdrawn), and what it received differs from it."""
    if body.piece is None or body.expected is None or body.received is None or body.expected == body.received:
        return False
    published = await store.get_piece_hashes(body.digest)
    if published is None or published.hashes.get(body.piece) != body.expected:
        return False
    return any(h.peer.id == body.peer_id and h.has(body.piece) for h in await store.holders(body.digest))


async def whoami(request: Request) -> Response:
    """The peer id the caller's credential proves (null for the shared token): peers check each
    other's node tokens here, since only the tracker can verify them."""
    return JSONResponse({"peer_id": request.scope.get("state", {}).get(PEER_KEY)})


async def offer_catalog(request: Request) -> Response:
    name = validate.catalog_name(request.path_params["name"])
    serial = validate.serial(request.path_params["serial"])
    body = validate.catalog_offer(await _json_body(request))
    _own(request, body.peer_id, "peer_id")  # a peer offers only its own catalog
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
    return JSONResponse(
        {"catalog": name, "serial": agreed.serial, "offered_by": len(agreed.voters), **result.to_wire()}
    )


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
        except Exception:  # noqa: BLE001 - any store failure means "not healthy"
            log.warning("tracker store unavailable", exc_info=True)  # its address stays in the log
            return _error(503, "store unavailable")
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
        Route("/v1/pieces/{digest}/reset", _guarded(reset_pieces), methods=["POST"]),
        Route("/v1/lease/{digest}", _guarded(acquire_lease), methods=["POST"]),
        Route("/v1/lease/{digest}/release", _guarded(release_lease), methods=["POST"]),
        Route("/v1/report", _guarded(report), methods=["POST"]),
        Route("/v1/catalogs/{name}/{serial}", _guarded(offer_catalog), methods=["PUT"]),
        Route("/v1/readiness", _guarded(catalog_readiness), methods=["GET"]),
        Route("/v1/readiness", _guarded(digests_readiness), methods=["POST"]),
        Route("/v1/stats", stats, methods=["GET"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if metrics_endpoint is not None:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    credentials = config.auth()
    middleware = [Middleware(PeerAuth, credentials=credentials)] if credentials.enabled else []
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.store = store
    app.state.config = config
    app.state.report_limiter = KeyedRateLimiter(config.report_rate, config.report_burst, clock=config.clock)
    return app
