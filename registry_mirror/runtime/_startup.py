"""Checks before anything starts serving, each failure one line for the operator: the cache
directory (present or creatable, writable, not held by another process) and every listening
address, bound here up front so that nothing says "ready" before all of them are.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile

from nvme_cache import CacheLock
from registry_mirror.config import Settings, default_cache_dir


class StartupError(Exception):
    """Why the mirror cannot start, as one line."""


def check_cache_dir(settings: Settings) -> None:
    root = settings.cache.directory
    if not root.exists():
        # A configured directory on a disk that is not mounted must not quietly land on the root
        # file system: only the default location is created with its parents.
        if root.parent.exists() or root == default_cache_dir():
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"cache dir {root} cannot be created: {exc.strerror}") from None
        else:
            raise StartupError(f"cache dir {root} does not exist, nor does {root.parent} (is the disk mounted?)")
    if not root.is_dir():
        raise StartupError(f"cache dir {root} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(f"cache dir {root} is not writable: {exc.strerror}") from None
    holder = CacheLock(root).holder()
    if holder is not None:
        raise StartupError(f"cache dir {root} is in use by another registry-mirror (pid {holder.get('pid', '?')})")


def bind(name: str, host: str, port: int) -> socket.socket:
    """A listening socket for `host:port`, as uvicorn would make it (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
        raise StartupError(f"cannot listen on {host}:{port} ({name}): {reason}") from None
    sock.set_inheritable(False)
    os.set_blocking(sock.fileno(), False)
    return sock


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
