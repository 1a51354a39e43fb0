"""A minimal Hugging Face-like front in front of olah, run as a real process:
`python -m tests.hub.hub_front PORT OLAH_URL TOKEN`.

olah serves no private repositories, so this front adds what huggingface.co does for them:
repos of the org `private` answer 401 RepoNotFound unless `Authorization: Bearer TOKEN` is sent.
It also adds the Xet metadata huggingface.co sends (`xetHash` in tree and paths-info entries of
LFS files, `X-Xet-Hash` and a `rel="xet-auth"` Link on resolve answers), which would send a client
with hf_xet straight to the Xet CAS unless the mirror strips them. Every request is logged."""

from __future__ import annotations

import json
import sys

import aiohttp
from aiohttp import web

FAKE_XET_HASH = "ab" * 32


def main() -> None:
    port, olah_url, token = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]

    async def handle(request: web.Request) -> web.StreamResponse:
        print(
            f"{request.method} {request.path_qs} auth={'yes' if request.headers.get('Authorization') else 'no'}",
            flush=True,
        )
        if "/private/" in request.path and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(
                status=401, headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            )
        session: aiohttp.ClientSession = request.app["session"]
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "range")}
        body = await request.read()
        async with session.request(
            request.method, olah_url + request.path_qs, headers=headers, data=body or None, allow_redirects=True
        ) as upstream:
            out = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "x-repo-commit", "etag", "x-error-code", "x-error-message")
            }
            if "/resolve/" in request.path:
                out["X-Xet-Hash"] = FAKE_XET_HASH
                out["Link"] = f'<{olah_url}/api/models/x/xet-read-token/main>; rel="xet-auth"'
            if "/tree/" in request.path or "/paths-info/" in request.path:
                data = json.loads(await upstream.read())
                for entry in data:
                    if isinstance(entry, dict) and entry.get("lfs"):
                        entry["xetHash"] = FAKE_XET_HASH
                return web.Response(body=json.dumps(data).encode(), status=upstream.status, headers=out)
            if upstream.content_length is not None:
                out["Content-Length"] = str(upstream.content_length)
            response = web.StreamResponse(status=upstream.status, headers=out)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(1 << 20):
                    await response.write(chunk)
            await response.write_eof()
            return response

    async def start_session(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_startup.append(start_session)
    app.on_cleanup.append(close_session)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
