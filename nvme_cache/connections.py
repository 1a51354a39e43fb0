"""Keep-alive `http.client` connections for bodies read on worker threads straight into a fill:
origin ranges (registry_mirror.upstream._ranges) and peer pieces (p2p.piece_client). Thread-safe."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

_IDLE_PER_HOST = 16
# An idle connection is closed after this long (uvicorn closes its side after 5 s): without it,
# every peer (or origin address) ever used keeps up to 16 descriptors open for the process's life.
_IDLE_SECONDS = 4.0


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname or "", port)


class ConnectionPool:
    """Keep-alive connections per host, shared by every fill of one upstream (or of the swarm)."""

    def __init__(
        self,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tls = tls
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: dict[Target, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()

    def take(self, target: Target) -> http.client.HTTPConnection:
        self._expire()
        with self._lock:
            idle = self._idle.get(target)
            if idle:
                return idle.pop()[1]
        if target.scheme == "https":
            return http.client.HTTPSConnection(
                target.host, target.port, timeout=self._connect_timeout, context=self._tls
            )
        return http.client.HTTPConnection(target.host, target.port, timeout=self._connect_timeout)

    def give_back(self, target: Target, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(target, [])
            if len(idle) < _IDLE_PER_HOST:
                idle.append((self._clock(), connection))
                return
        connection.close()

    def _expire(self) -> None:
        """Closes the connections idle for longer than _IDLE_SECONDS, of every host."""
        cutoff = self._clock() - _IDLE_SECONDS
        stale: list[http.client.HTTPConnection] = []
        with self._lock:
            for target, idle in list(self._idle.items()):
                stale += [connection for since, connection in idle if since < cutoff]
                idle[:] = [(since, connection) for since, connection in idle if since >= cutoff]
                if not idle:
                    del self._idle[target]
        for connection in stale:
            connection.close()

    def exchange(
        self,
        target: Target,
        path: str,
        headers: dict[str, str],
        attach: Callable[[http.client.HTTPConnection], None] | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET `path` on a pooled connection and read the response's headers. A reused keep-alive
        connection the server had closed gets one retry on a new one; any other failure raises the
        OSError or HTTPException as it came. `attach` sees each connection before it is used (so a
        caller on another thread can shut it down)."""
        for attempt in range(2):
            connection = self.take(target)
            reused = connection.sock is not None
            if attach is not None:
                attach(connection)
            try:
                connection.request("GET", path, headers=headers)
                return connection, connection.getresponse()
            except (OSError, http.client.HTTPException):
                connection.close()
                if reused and attempt == 0:
                    continue
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, connection in connections:
                connection.close()

    def read_timeout(self) -> float:
        return self._read_timeout
