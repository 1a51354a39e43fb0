"""HTTP servers on 127.0.0.1 for the P2P wire tests: a raw one that misbehaves on cue (no
framework in between: a peer or a tracker trickling its answer a byte at a time), and an honest
peer answering Range requests."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class RawServer:
    """Accepts connections; `handle(conn)` runs on a thread per connection."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._handle = handle
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        except OSError:
            pass

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def trickle(conn: socket.socket, server: RawServer, head: bytes, every: float, byte: bytes = b" ") -> None:
    conn.sendall(head)
    while not server.stopping:
        time.sleep(every)
        conn.sendall(byte)


@contextmanager
def range_server(blob: bytes, first: Callable[[], None] | None = None) -> Iterator[str]:
    """An honest peer: the standard library's keep-alive HTTP/1.1 server answering Range requests
    of `blob`; yields its URL. `first`, if given, runs (on the server's thread) before its first
    answer."""
    pending = [first] if first is not None else []

    class Ranges(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            if pending:
                pending.pop()()
            first_byte, last_byte = self.headers["Range"].removeprefix("bytes=").split("-")
            begin, end = int(first_byte), int(last_byte) + 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {begin}-{end - 1}/{len(blob)}")
            self.send_header("Content-Length", str(end - begin))
            self.end_headers()
            self.wfile.write(blob[begin:end])

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ranges)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
