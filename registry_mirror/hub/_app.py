"""build_hub_app: one ASGI app for both hubs. app.py mounts it under `/hf` and `/modelscope`;
the mount point (the end of `root_path`) says which hub a request is for. Run on its own, it
routes on the first path segment instead."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from registry_mirror.api import Mirror
from registry_mirror.hub._auth_cache import AccessCache
from registry_mirror.hub._delivery import SmallFiles
from registry_mirror.hub._errors import ENTRY_NOT_FOUND, hub_error
from registry_mirror.hub._hf_routes import HuggingFaceApp
from registry_mirror.hub._hf_upstream import HubClient
from registry_mirror.hub._modelscope_routes import ModelScopeApp
from registry_mirror.hub._revisions import RevisionCache

MOUNTS = ("/hf", "/modelscope")


class HubApp:
    def __init__(self, huggingface: HuggingFaceApp, modelscope: ModelScopeApp, clients: list[HubClient]) -> None:
        self.huggingface = huggingface
        self.modelscope = modelscope
        self._clients = clients

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        root = scope.get("root_path", "")
        if not root.endswith(MOUNTS):
            mount = next((m for m in MOUNTS if scope["path"] == m or scope["path"].startswith(m + "/")), None)
            if mount is None:
                await hub_error(404, ENTRY_NOT_FOUND, "no such endpoint on this mirror")(scope, receive, send)
                return
            root = root + mount
            scope = {**scope, "root_path": root}
        app = self.huggingface if root.endswith("/hf") else self.modelscope
        await app(scope, receive, send)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_hub_app(
    mirror: Mirror,
    hf_upstream: str,
    modelscope_upstream: str,
    revision_ttl: float,
    auth_ttl: float,
    modelscope_ttls: tuple[float, float] | None = None,
) -> HubApp:
    """`modelscope_ttls`: (revision_ttl, auth_ttl) of the ModelScope hub; the HF pair when None."""
    ms_revision_ttl, ms_auth_ttl = modelscope_ttls or (revision_ttl, auth_ttl)
    chunk_size = mirror.store.chunk_size
    hf_client = HubClient(hf_upstream, "hf", chunk_size=chunk_size)
    ms_client = HubClient(modelscope_upstream, "modelscope", chunk_size=chunk_size)
    small = SmallFiles(mirror)
    store, max_stale = mirror.store, mirror.settings.max_stale
    huggingface = HuggingFaceApp(
        mirror,
        hf_client,
        RevisionCache(store, "hf-revision", revision_ttl, max_stale),
        AccessCache(auth_ttl, store=store, scope="hf-public"),
        small,
        listings=RevisionCache(store, "hf-api", revision_ttl, max_stale),
    )
    modelscope = ModelScopeApp(
        mirror,
        ms_client,
        RevisionCache(store, "modelscope-api", ms_revision_ttl, max_stale),
        AccessCache(ms_auth_ttl, store=store, scope="modelscope-public"),
    )
    return HubApp(huggingface, modelscope, [hf_client, ms_client])
