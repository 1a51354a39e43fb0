"""One JSON line per request, and the request counter. Plain ASGI middleware."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nvme_cache import sender_of
from registry_mirror.telemetry import _metrics as metrics

log = logging.getLogger("registry_mirror.access")


class AccessLog:
    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info: dict[str, Any] = {}
        scope["registry_mirror"] = info
        state = {"status": 500, "bytes": 0}

        async def send_and_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            sender = sender_of(scope)  # bytes sent with sendfile went around `send`
            sent = state["bytes"] + (sender.sent if sender is not None else 0)
            self._record(scope, info, state["status"], sent, time.perf_counter() - started)

    def _record(self, scope: Scope, info: dict[str, Any], status: int, sent: int, seconds: float) -> None:
        route = info.get("route") or _plain_route(scope["path"])
        metrics.count_request(route, scope["method"], status)
        if not self.enabled or not log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        line = {
            "client": client[0] if client else None,
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "upstream": info.get("upstream"),
            "repository": info.get("repository"),
            "digest": info.get("digest"),
            "source": info.get("source"),
            "signature": info.get("signature"),  # verified, refused or warned, under a signature policy
            "signature_policy": info.get("signature_policy"),
            "status": status,
            "bytes": sent,
            "duration_ms": round(seconds * 1000, 3),
            "error": info.get("error"),
        }
        log.info(json.dumps({k: v for k, v in line.items() if v is not None}, separators=(",", ":")))


def _plain_route(path: str) -> str:
    return path.strip("/").split("/")[0] or "root" if path in ("/healthz", "/readyz", "/metrics") else "other"
