"""Process entry points: `serve` (uvicorn, one worker, uvloop + httptools) and `cache verify`."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn

from nvme_cache import BlobStore
from registry_mirror.settings import Settings

log = logging.getLogger("registry_mirror")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def run(settings: Settings) -> int:
    from registry_mirror.app import create_app

    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # our own JSON access log replaces uvicorn's
        log_level="trace" if settings.log_level == "trace" else settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


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
