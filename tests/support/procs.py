"""A child process with its output in a log file, stopped politely then firmly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

# tests/conftest.py clears this for tests not marked `integration`, so a fixture that starts a process
# without saying so fails loudly instead of slowing down `make test-unit`. Scripts (bench/) keep it set.
_processes_allowed = True


def starts_processes(fixture_function: F) -> F:
    """Put under @pytest.fixture: every test that uses this fixture, directly or through other
    fixtures, is marked `integration` (tests/conftest.py)."""
    fixture_function.starts_processes = True  # type: ignore[attr-defined]  # a tag read by the conftest hook
    return fixture_function


def allow_processes(allowed: bool) -> None:
    global _processes_allowed
    _processes_allowed = allowed


def require_binary(name: str) -> str:
    """Absolute path of `name` on PATH, or a failure that says what to install."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"required binary {name!r} not found on PATH (apt-get install it)")
    return path


def aria2c_command(url: str, out: Path, connections: int = 8) -> list[str]:
    """aria2c fetching `url` into `out`/blob over `connections` connections in 1 MiB splits, the
    way model downloaders (hfd) run it."""
    return [
        require_binary("aria2c"),
        f"-x{connections}",
        f"-s{connections}",
        "-k1M",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--console-log-level=warn",
        "--summary-interval=0",
        "-d",
        str(out),
        "-o",
        "blob",
        url,
    ]


class ManagedProcess:
    """Popen wrapper: stdout+stderr go to `log_path`; stop() sends SIGTERM, then SIGKILL."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.popen is not None:
            raise RuntimeError(f"{self.argv[0]} already started")
        if not _processes_allowed:
            raise RuntimeError(
                f"{self.argv[0]}: this test is not marked integration; put @starts_processes "
                "(tests/support/procs.py) under the @pytest.fixture that starts it"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = None if self.env is None else {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            # A new session so a stop never reaches pytest's own process group.
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self._require_popen().pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Idempotent."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def kill9(self) -> None:
        """SIGKILL without warning, e.g. to simulate a crashed peer."""
        popen = self._require_popen()
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _require_popen(self) -> subprocess.Popen[bytes]:
        if self.popen is None:
            raise RuntimeError(f"{self.argv[0]} not started")
        return self.popen

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "not started" if self.popen is None else f"pid={self.popen.pid} rc={self.popen.poll()}"
        return f"ManagedProcess({self.argv[0]!r}, {state}, log={self.log_path})"
