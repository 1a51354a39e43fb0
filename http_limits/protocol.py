"""with_header_limits: a uvicorn HTTP protocol subclass that bounds header bytes, header time and
the connections one client address may hold open."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from http_limits import metrics


@dataclass(frozen=True)
class HeaderLimits:
    max_bytes: int = 64 * 1024  # request line plus headers
    timeout: float = 10.0  # seconds from the first byte of a request (or the connection) to its last header
    listener: str = "main"  # the metric's label
    max_connections_per_client: int = 0  # open connections per client address; 0 is no cap


_RESPONSES = {
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    503: b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n",
}


def with_header_limits(base: type[Any], limits: HeaderLimits) -> type[Any]:
    """A subclass of the uvicorn protocol class `base` (httptools or h11 style: it must have
    `data_received`, `on_message_begin` and `on_headers_complete` callbacks, as HttpToolsProtocol
    does) that enforces `limits`."""

    open_per_client: dict[str, int] = {}  # this listener's open connections by client address

    class Limited(base):  # type: ignore[misc]  # the uvicorn protocol class is chosen at run time
        _limits = limits

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._header_bytes = 0
            self._in_headers = True  # a connection that never sends anything is a slow header too
            self._refused = False
            self._header_timer: asyncio.TimerHandle | None = None
            peer = transport.get_extra_info("peername")
            self._client_address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            open_per_client[self._client_address] = open_per_client.get(self._client_address, 0) + 1
            super().connection_made(transport)
            cap = self._limits.max_connections_per_client
            if cap and open_per_client[self._client_address] > cap:
                # Each connection may hold buffers and a blob open: one address gets only so many.
                self._refuse(503, "too_many_connections")
                return
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            left = open_per_client.get(self._client_address, 1) - 1
            if left > 0:
                open_per_client[self._client_address] = left
            else:
                open_per_client.pop(self._client_address, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._in_headers:
                room = self._limits.max_bytes - self._header_bytes
                if len(data) > room:
                    # Feed only what fits: the headers may end inside it (the rest is body or the
                    # next request); if they do not, the client sent too much.
                    fits, rest = data[: max(room, 0)], data[max(room, 0) :]
                    self._header_bytes += len(fits)
                    if fits:
                        super().data_received(fits)
                    if self._in_headers:
                        self._refuse(431, "too_large")
                        return
                    if rest and not self._refused:
                        self.data_received(rest)
                    return
                self._header_bytes += len(data)
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = 0
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm_header_timer()
            super().on_headers_complete()

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                loop = asyncio.get_running_loop()
                self._header_timer = loop.call_later(self._limits.timeout, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._in_headers and not self._refused:
                # Idle between keep-alive requests is uvicorn's keep-alive timeout; here a request
                # was begun (or the connection opened) and its headers did not arrive in time.
                self._refuse(408, "timeout", quiet=self._header_bytes == 0)

        def _refuse(self, status: int, reason: str, quiet: bool = False) -> None:
            self._refused = True
            self._disarm_header_timer()
            metrics.header_refusals.add(1, {"listener": self._limits.listener, "reason": reason})
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            if not quiet:
                transport.write(_RESPONSES[status] + b"content-length: 0\r\nconnection: close\r\n\r\n")
            transport.close()

    Limited.__name__ = Limited.__qualname__ = f"HeaderLimited{base.__name__}"
    return Limited
