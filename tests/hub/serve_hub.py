"""Runs a mirror with the hub endpoints mounted the way app.py mounts them (`/hf`, `/modelscope`),
as a real uvicorn process: `python -m tests.hub.serve_hub PORT CACHE_DIR HF_URL MS_URL [REVISION_TTL]`.
Used until `serve --hf-upstream/--modelscope-upstream` exist."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from registry_mirror.app import build_mirror
from registry_mirror.hub import build_hub_app
from registry_mirror.settings import CacheSettings, Settings


def main() -> None:
    port, cache_dir, hf_url, ms_url = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    revision_ttl = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    settings = Settings(listen_port=port, cache=CacheSettings(directory=cache_dir, min_free_bytes=0))
    mirror = build_mirror(settings)
    hub = build_hub_app(mirror, hf_url, ms_url, revision_ttl=revision_ttl, auth_ttl=60.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mirror.store.open()
        try:
            yield
        finally:
            await hub.aclose()
            await mirror.store.aclose()

    async def healthz(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/healthz", healthz), Mount("/hf", hub), Mount("/modelscope", hub)],
                    lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()
