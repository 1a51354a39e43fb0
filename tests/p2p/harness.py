"""Real tracker and redis-server processes on free loopback ports for the p2p tests."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port, wait_port
from tests.support.procs import ManagedProcess, require_binary

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"


@dataclass(frozen=True)
class Running:
    url: str
    process: ManagedProcess


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[Running]:
    port = free_port()
    argv = [
        require_binary("redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    with ManagedProcess(argv, workdir / f"redis-{port}.log") as process:
        wait_port("127.0.0.1", port)
        yield Running(f"redis://127.0.0.1:{port}/0", process)


@contextlib.contextmanager
def tracker(
    workdir: Path,
    *,
    store: str | None = None,
    token: str | None = TOKEN,
    extra: Sequence[str] = (),
    scheme: str = "http",
) -> Iterator[Running]:
    """`registry-mirror tracker` as a subprocess through the CLI's own main()."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "registry_mirror.cli._tracker",
        "tracker",
        "--listen",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        *extra,
    ]
    if store is not None:
        argv += ["--store", store]
    if token is not None:
        token_file = workdir / f"token-{port}"
        token_file.write_text(token + "\n")
        argv += ["--token-file", str(token_file)]
    with ManagedProcess(argv, workdir / f"tracker-{port}.log", cwd=REPO) as process:
        try:
            wait_port("127.0.0.1", port, timeout=30)
        except TimeoutError as exc:
            raise RuntimeError(f"tracker did not start:\n{process.log_tail()}") from exc
        yield Running(f"{scheme}://127.0.0.1:{port}", process)
