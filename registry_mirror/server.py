"""Process entry points: `serve` (uvicorn, one worker, uvloop + httptools) and `cache verify`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Generator

from pathlib import Path

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from http_limits import HeaderLimits, with_header_limits

from nvme_cache import BlobStore
from registry_mirror.settings import Settings

log = logging.getLogger("registry_mirror")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per tracker call is noise


def run(settings: Settings, config_file: Path | None = None) -> int:
    """`config_file`: the TOML the settings came from, polled for blocklist changes."""
    from registry_mirror.app import build_app

    configure_logging(settings.log_level)
    app, mirror = build_app(settings, config_file)
    main = uvicorn.Server(_config(app, settings.listen_host, settings.listen_port, settings.log_level,
                                  _header_limits(settings, "main")))
    extra: list[uvicorn.Server] = [
        _Secondary(_config(listener.app, listener.host, listener.port, settings.log_level,
                           _header_limits(settings, listener.name), **listener.ssl))
        for listener in mirror.listeners
    ]
    if not extra:
        main.run()
        return 0 if main.started else 1
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve_together(main, extra))


def _header_limits(settings: Settings, listener: str) -> HeaderLimits:
    limits = settings.limits
    return HeaderLimits(limits.max_header_bytes, limits.header_timeout, listener, limits.max_connections_per_client)


def _config(app: object, host: str, port: int, log_level: str, limits: HeaderLimits, **ssl: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
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
        **ssl,  # type: ignore[arg-type]
    )


class _Secondary(uvicorn.Server):
    """A second listener in the same loop: the main server owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_together(main: uvicorn.Server, extra: list[uvicorn.Server]) -> int:
    # The main app's lifespan opens the cache; the other listeners start once it is ready.
    main_task = asyncio.create_task(main.serve())
    while not main.started and not main_task.done():
        await asyncio.sleep(0.02)
    tasks = [asyncio.create_task(server.serve()) for server in extra]
    await main_task
    for server in extra:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return 0 if main.started else 1


def verify_cache(settings: Settings) -> int:
    """Rehash every cached blob; corrupt files move to quarantine/. Exit 1 when any was corrupt."""
    configure_logging(settings.log_level)
    cache = settings.cache
    store = BlobStore(cache.directory, max_size=cache.max_size, chunk_size=cache.chunk_size)
    store.open()
    try:
        report = asyncio.run(store.verify_all())
    finally:
        store.close()
    for digest in report.corrupt:
        print(f"corrupt: {digest} (moved to {store.layout.quarantine})")
    print(f"checked {report.checked} blobs, {len(report.corrupt)} corrupt")
    return 1 if report.corrupt else 0
