"""Runs the tracker under uvicorn with the chosen store and optional (mutual) TLS."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from http_limits import HeaderLimits, with_header_limits
from p2p.tracker.app import Handler, TrackerConfig, create_app
from p2p.tracker.auth import CERT_NAME_KEY
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


def with_peer_names(base: type[Any]) -> type[Any]:
    """A subclass of the uvicorn protocol `base` that puts the verified client certificate's
    commonName into each request's `scope["state"]` (uvicorn itself exposes no TLS details)."""

    class Named(base):  # type: ignore[misc]  # the uvicorn protocol class is chosen at run time
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            ssl_object = transport.get_extra_info("ssl_object")
            self._peer_name = _common_name(ssl_object.getpeercert()) if ssl_object is not None else None
            super().connection_made(transport)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._peer_name is not None:
                self.scope["state"][CERT_NAME_KEY] = self._peer_name

    Named.__name__ = Named.__qualname__ = f"PeerNamed{base.__name__}"
    return Named


def _common_name(cert: Any) -> str | None:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


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
        http=with_peer_names(with_header_limits(HttpToolsProtocol, settings.header_limits)),
        **tls,  # type: ignore[arg-type]  # ssl_* keyword options, each of its own type
    )
    uvicorn.Server(config).run()
