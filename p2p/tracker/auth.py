"""Bearer-token check for the /v1 API; mutual TLS, when configured, is enforced by the server."""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class BearerTokenAuth:
    """Refuses /v1 requests whose `Authorization: Bearer` token differs from the shared one."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            offered = dict(scope["headers"]).get(b"authorization", b"")
            # compare_digest: the time taken must not reveal how much of the token matched.
            if not hmac.compare_digest(offered, self._expected):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token", "field": "authorization"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="registry-mirror-tracker"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
