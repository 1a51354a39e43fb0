"""Turns `settings.p2p` into a peer: the node (whose `wrap` the blob service puts in front of the
origin, and whose start/stop the app's lifespan runs), its listener, the optional embedded tracker."""

from __future__ import annotations

import logging
import re
import ssl

from starlette.applications import Starlette

from nvme_cache import BlobStore, ZeroCopyMiddleware
from p2p import P2PConfig, P2PNode, create_peer_app
from registry_mirror.api import Listener
from registry_mirror.config import P2PSettings, parse_listen

log = logging.getLogger("registry_mirror.p2p")

_PEER_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
_NODE_MAC = re.compile(r"[0-9a-f]{64}")


def build_p2p(settings: P2PSettings, store: BlobStore) -> tuple[P2PNode, Listener] | None:
    """The node and its peer listener; None without `p2p.tracker`."""
    if not settings.tracker:
        return None
    if not settings.peer_listen:
        raise ValueError("p2p.peer_listen: required when p2p.tracker is set")
    host, port = parse_listen(settings.peer_listen)
    tls = bool(settings.peer_cert)
    scheme = "https" if tls else "http"
    advertise = settings.advertise or f"{scheme}://{host}:{port}"
    embedded = settings.tracker == "embedded"
    tracker_url = f"{advertise.rstrip('/')}/tracker" if embedded else settings.tracker
    if not tls:
        log.warning("peer TLS is off (no --peer-cert/--peer-key/--peer-ca): peers talk plain HTTP")
    config = P2PConfig(
        peer_id=_peer_id(settings, advertise),
        advertise_url=advertise,
        tracker_url=tracker_url,
        tracker_token=settings.tracker_token,
        zone=settings.zone,
        piece_size=settings.piece_size,
        max_uploads=settings.max_uploads,
        origin_concurrency=settings.origin_concurrency,
        upload_bandwidth=settings.upload_bandwidth,
        stall_timeout=settings.stall_timeout,
        lease_ttl=settings.lease_ttl,
        client_ssl=_client_ssl(settings) if tls else None,
    )
    node = P2PNode(config, store)
    tracker_app = _embedded_tracker(settings) if embedded else None
    server_ssl = _server_ssl(settings) if tls else {}
    listener = Listener("peer", ZeroCopyMiddleware(create_peer_app(node, tracker_app)), host, port, server_ssl)
    log.info("p2p on: peer %s, tracker %s%s", config.peer_id, tracker_url, " (embedded)" if embedded else "")
    return node, listener


def _peer_id(settings: P2PSettings, advertise: str) -> str:
    """The tracker binds a node token to one peer id: use that one. (A certificate's commonName is
    not taken on its own: fleets may share one certificate; with the tracker's --cert-identity,
    p2p.peer_id names it.)"""
    if settings.peer_id:
        return settings.peer_id
    token = settings.tracker_token or ""
    named, sep, mac = token.partition("/")
    if sep and named and _NODE_MAC.fullmatch(mac) and not _PEER_ID_UNSAFE.search(named):
        return named
    host_port = advertise.split("://", 1)[-1].split("/", 1)[0]
    return _PEER_ID_UNSAFE.sub("-", host_port)[:128] or "peer"


def _embedded_tracker(settings: P2PSettings) -> Starlette:
    from p2p.tracker import MemoryStore, TrackerConfig, create_app

    return create_app(MemoryStore(peer_ttl=30.0), TrackerConfig(token=settings.tracker_token))


def _client_ssl(settings: P2PSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.peer_ca) if settings.peer_ca else None)
    context.check_hostname = False  # peers are addressed by IP; the CA is private to the cluster
    if settings.peer_cert and settings.peer_key:
        context.load_cert_chain(str(settings.peer_cert), str(settings.peer_key))
    return context


def _server_ssl(settings: P2PSettings) -> dict[str, object]:
    options: dict[str, object] = {"ssl_certfile": str(settings.peer_cert), "ssl_keyfile": str(settings.peer_key)}
    if settings.peer_ca:
        options.update(ssl_ca_certs=str(settings.peer_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options
