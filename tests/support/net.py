"""Loopback ports and readiness polling for test servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on `host`; free until someone else binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Poll until a TCP connect to host:port succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from exc
            time.sleep(0.05)


def wait_http(
    url: str,
    timeout: float = 15.0,
    alive: Callable[[], bool] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Poll `url` with GET until any HTTP response arrives; return it.

    `alive` may be a callable returning False once the server process died, so a crash
    fails fast instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"server for {url} exited before answering")
        try:
            return httpx.get(url, timeout=2.0, headers=headers)
        except httpx.TransportError as exc:
            last_error = exc
            time.sleep(0.05)
    raise TimeoutError(f"no HTTP response from {url} after {timeout}s: {last_error!r}")
