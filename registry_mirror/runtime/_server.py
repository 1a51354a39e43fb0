"""Process entry points: `serve` (uvicorn, one worker, uvloop + httptools) and `cache verify`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Generator
from pathlib import Path

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from http_limits import HeaderLimits, with_header_limits
from nvme_cache import BlobStore, CacheInUse, CacheLock, VerifyReport
from registry_mirror.config import Settings
from registry_mirror.runtime._startup import StartupError, bind, check_cache_dir, close_all
from registry_mirror.version import VERSION

log = logging.getLogger("registry_mirror")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per tracker call is noise


def run(settings: Settings, config_file: Path | None = None) -> int:
    """`config_file`: the TOML the settings came from, polled for blocklist changes.

    Every listening address is bound before anything starts, so a taken port is one line and
    exit 1, and "ready" is logged only once every listener serves."""
    from registry_mirror.runtime._app import build_app

    configure_logging(settings.log_level)
    sockets: list[socket.socket] = []
    try:
        check_cache_dir(settings)
        app, assembly = build_app(settings, config_file)
        sockets.append(bind("listen", settings.listen_host, settings.listen_port))
        for listener in assembly.listeners:
            sockets.append(bind(listener.name, listener.host, listener.port))
    except StartupError as exc:
        close_all(sockets)
        print(f"registry-mirror: error: {exc}", file=sys.stderr)
        return 1
    # Only once every check passed and every listener is bound: a failed start is one line.
    for line in startup_summary(settings, config_file):
        log.info("%s", line)
    main = uvicorn.Server(
        _config(app, settings.listen_host, settings.listen_port, settings.log_level, _header_limits(settings, "main"))
    )
    extra: list[uvicorn.Server] = [
        _Secondary(
            _config(
                listener.app,
                listener.host,
                listener.port,
                settings.log_level,
                _header_limits(settings, listener.name),
                **listener.ssl,
            )
        )
        for listener in assembly.listeners
    ]
    names = [f"{settings.listen_host}:{settings.listen_port}"] + [
        f"{listener.name} {listener.host}:{listener.port}" for listener in assembly.listeners
    ]
    ready = (
        f"registry-mirror {VERSION} ready: listening on {', '.join(names)}; cache {settings.cache.directory}; "
        f"upstreams {', '.join(assembly.mirror.upstreams.names())}, default {settings.default_upstream}"
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve_together(main, extra, sockets, ready))


def startup_summary(settings: Settings, config_file: Path | None) -> list[str]:
    """What a user checks first: where it listens, where the cache is, what it fetches from."""
    from registry_mirror.config import format_size

    release = VERSION
    listeners = [f"api http://{_host_port(settings.listen_host, settings.listen_port)}"]
    if settings.admin.listen:
        listeners.append(f"admin {settings.admin.listen}")
    if settings.p2p.peer_listen:
        listeners.append(f"peers {settings.p2p.peer_listen}")
    upstreams = ", ".join(f"{u.name}={u.url}" + (f" via {u.via}" if u.via else "") for u in settings.upstreams)
    return [
        f"registry-mirror {release}; config {config_file or '(none: defaults, environment, flags)'}",
        "listening: " + ", ".join(listeners),
        f"cache: {settings.cache.directory} (max {format_size(settings.cache.max_size)})",
        f"upstreams: {upstreams or 'none'}; default {settings.default_upstream}",
        f"hub upstreams: hf {settings.hf.upstream}, modelscope {settings.modelscope.upstream}"
        + (f"; tracker {settings.p2p.tracker}" if settings.p2p.tracker else ""),
    ]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _header_limits(settings: Settings, listener: str) -> HeaderLimits:
    limits = settings.limits
    return HeaderLimits(limits.max_header_bytes, limits.header_timeout, listener, limits.max_connections_per_client)


def _config(app: object, host: str, port: int, log_level: str, limits: HeaderLimits, **ssl: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]  # any of our ASGI apps; uvicorn types its own protocol
        host=host,
        port=port,
        loop="uvloop",
        # Header size (431) and header time (408) limits on every listener (http_limits).
        http=with_header_limits(HttpToolsProtocol, limits),
        lifespan="auto",
        access_log=False,  # our own JSON access log replaces uvicorn's
        proxy_headers=False,  # nothing sits in front of us: X-Forwarded-For would let clients pick their IP
        log_level="trace" if log_level == "trace" else log_level,
        log_config=None,
        timeout_graceful_shutdown=10,
        **ssl,  # type: ignore[arg-type]  # ssl_* keyword options, each of its own type
    )


class _Secondary(uvicorn.Server):
    """A second listener in the same loop: the main server owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_together(
    main: uvicorn.Server, extra: list[uvicorn.Server], sockets: list[socket.socket], ready: str
) -> int:
    # The main app's lifespan opens the cache; the other listeners start once it is ready.
    # uvicorn.Server says it started with a flag only, no event to await: polled, at startup only.
    main_task = asyncio.create_task(main.serve(sockets=[sockets[0]]))
    while not main.started and not main_task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in zip(extra, sockets[1:], strict=True)]
    while main.started and not all(server.started for server in extra) and not any(t.done() for t in tasks):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    if main.started and all(server.started for server in extra):
        log.info("%s", ready)
    elif main.started:
        main.should_exit = True  # a second listener failed: do not run half a mirror
    await main_task
    for server in extra:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    close_all(sockets)
    return 0 if main.started and all(server.started for server in extra) else 1


def verify_cache(settings: Settings) -> int:
    """Rehash every cached blob; corrupt files move to quarantine/. Exit 1 when any was corrupt.

    Beside a running mirror (it holds the cache dir's lock) the mirror itself verifies, through
    its admin API, so its index forgets a quarantined blob at once; without an admin API this
    refuses rather than pull files from under it."""
    configure_logging(settings.log_level)
    cache = settings.cache
    holder = CacheLock(cache.directory).holder() if cache.directory.is_dir() else None
    if holder is not None:
        try:
            report, quarantine = _verify_through_admin(holder, settings.admin.token)
        except StartupError as exc:
            print(f"registry-mirror: error: {exc}", file=sys.stderr)
            return 2
        print(f"verified by the running mirror (pid {holder.get('pid', '?')}, admin {holder['admin']})")
    else:
        store = BlobStore(cache.directory, max_size=cache.max_size, chunk_size=cache.chunk_size)
        try:
            store.open()
        except CacheInUse as exc:  # a mirror started meanwhile
            print(f"registry-mirror: error: {exc}; run cache verify again", file=sys.stderr)
            return 2
        try:
            report = asyncio.run(store.verify_all())
        finally:
            store.close()
        quarantine = str(store.layout.quarantine)
    for digest in report.corrupt:
        print(f"corrupt: {digest} (moved to {quarantine})")
    print(f"checked {report.checked} blobs, {len(report.corrupt)} corrupt")
    return 1 if report.corrupt else 0


def _verify_through_admin(holder: dict[str, object], token: str | None) -> tuple[VerifyReport, str]:
    import httpx

    admin = str(holder.get("admin") or "")
    pid = holder.get("pid", "?")
    if not admin:
        raise StartupError(
            f"the cache dir is served by registry-mirror pid {pid} with its admin API off:"
            " enable admin.listen, or stop it, and run cache verify again"
        )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(f"{admin}/admin/cache/verify", headers=headers, timeout=None)
    except httpx.TransportError as exc:
        raise StartupError(f"cannot reach the admin API of registry-mirror pid {pid} at {admin}: {exc}") from None
    if response.status_code != 200:
        raise StartupError(f"the admin API at {admin} answered {response.status_code}: {response.text[:200]}")
    body = response.json()
    return VerifyReport(int(body["checked"]), tuple(str(d) for d in body["corrupt"])), str(body["quarantine"])
