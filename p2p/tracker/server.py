"""Runs the tracker under uvicorn with the chosen store and optional (mutual) TLS."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from http_limits import HeaderLimits, with_header_limits

from p2p.tracker.app import Handler, TrackerConfig, create_app
from p2p.tracker.memory_store import MemoryStore
from p2p.tracker.store import TrackerStore


@dataclass(frozen=True)
class TLSFiles:
    cert: str
    key: str
    client_ca: str | None = None  # set: every client must present a certificate signed by it


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 5050
    store_url: str | None = None  # redis://... or None for the in-memory store
    peer_ttl: float = 30.0
    tls: TLSFiles | None = None
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    log_level: str = "info"
    # The tracker listens on the network: bound what a client may make it parse, and for how long.
    header_limits: HeaderLimits = field(default_factory=lambda: HeaderLimits(16 * 1024, 10.0, "tracker"))


def build_store(store_url: str | None, peer_ttl: float) -> TrackerStore:
    if store_url is None or store_url == "memory":
        return MemoryStore(peer_ttl=peer_ttl)
    if store_url.startswith(("redis://", "rediss://", "unix://")):
        from p2p.tracker.redis_store import RedisStore  # redis is needed only when asked for

        return RedisStore(store_url, peer_ttl=peer_ttl)
    raise ValueError(f"store: unsupported URL {store_url!r} (use redis://HOST:PORT/DB or memory)")


def serve(settings: ServerSettings, metrics_endpoint: Handler | None = None) -> None:
    app = create_app(build_store(settings.store_url, settings.peer_ttl), settings.tracker, metrics_endpoint)
    tls: dict[str, object] = {}
    if settings.tls is not None:
        tls = {"ssl_certfile": settings.tls.cert, "ssl_keyfile": settings.tls.key}
        if settings.tls.client_ca is not None:
            tls.update(ssl_ca_certs=settings.tls.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        http=with_header_limits(HttpToolsProtocol, settings.header_limits),
        **tls,  # type: ignore[arg-type]
    )
    uvicorn.Server(config).run()
