"""The registry-mirror under test, run as a real `registry-mirror serve` process."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from .net import free_port, wait_http
from .procs import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


def mirror_binary() -> str:
    venv_binary = REPO_ROOT / ".venv" / "bin" / "registry-mirror"
    if venv_binary.exists():
        return str(venv_binary)
    found = shutil.which("registry-mirror")
    if found is None:
        raise RuntimeError(f"registry-mirror not installed: expected {venv_binary} (pip install -e .)")
    return found


class MirrorProcess:
    """`registry-mirror serve --listen HOST:PORT --cache-dir DIR --upstream NAME=URL ... EXTRA`.

    `restart()` keeps the port and the cache dir, for restart and crash-recovery tests.
    """

    def __init__(
        self,
        workdir: Path,
        upstreams: Mapping[str, str],
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        cache_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.command = list(command) if command is not None else None  # instead of registry-mirror
        self.upstreams = dict(upstreams)
        self.extra_args = list(extra_args)
        self.bind_host = host
        self.fixed_port = port
        self.port = port or 0
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.workdir / "cache"
        self.env = dict(env or {})
        self.process: ManagedProcess | None = None
        self.admin_port = 0
        self._starts = 0

    @property
    def host(self) -> str:
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def argv(self) -> list[str]:
        argv = [
            *(self.command or [mirror_binary()]),
            "serve",
            "--listen",
            self.host,
            "--cache-dir",
            str(self.cache_dir),
        ]
        if "--config" not in self.extra_args:
            # Only the test's own origins: the built-in upstreams point at the internet.
            config = self.workdir / "no-builtins.toml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text("builtin_upstreams = false\n")
            argv += ["--config", str(config)]
            if "--default-upstream" not in self.extra_args and self.upstreams:
                argv += ["--default-upstream", next(iter(self.upstreams))]
        for name, url in self.upstreams.items():
            argv += ["--upstream", f"{name}={url}"]
        if "--admin-listen" not in self.extra_args:
            # The default admin port (5001) would be shared by every mirror a test starts.
            if not self.admin_port:
                self.admin_port = free_port(self.bind_host)
            argv += ["--admin-listen", f"{self.bind_host}:{self.admin_port}"]
        return argv + self.extra_args

    def start(self, timeout: float = 30.0, attempts: int = 3) -> MirrorProcess:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            if self.fixed_port is None and (attempt > 0 or self.port == 0):
                self.port = free_port(self.bind_host)
            self._starts += 1
            self.process = ManagedProcess(
                self.argv(), self.workdir / f"mirror-{self._starts}.log", env=self.env
            ).start()
            try:
                self._wait_ready(timeout)
                return self
            except (RuntimeError, TimeoutError) as exc:
                log = self.process.log_tail(60)
                self.process.stop()
                retry = "address already in use" in log.lower() and self.fixed_port is None
                if not retry or attempt == attempts - 1:
                    raise RuntimeError(
                        f"registry-mirror did not become ready ({exc}):\nargv: {' '.join(self.argv())}\n{log}"
                    ) from exc
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        # /healthz answers whatever the path prefix is; /v2/ then proves the API is up.
        wait_http(f"{self.url}/healthz", timeout=timeout, alive=self.process.alive)
        response = wait_http(f"{self.url}{self._prefix()}/v2/", timeout=timeout, alive=self.process.alive)
        if response.status_code != 200:
            raise RuntimeError(f"GET /v2/ answered {response.status_code}: {response.text[:300]}")

    def _prefix(self) -> str:
        if "--path-prefix" in self.extra_args:
            return "/" + self.extra_args[self.extra_args.index("--path-prefix") + 1].strip("/")
        return ""

    def stop(self) -> int | None:
        return None if self.process is None else self.process.stop()

    def kill9(self) -> None:
        if self.process is not None:
            self.process.kill9()

    def restart(self, timeout: float = 30.0) -> MirrorProcess:
        """Stop (if running) and start again on the same port with the same cache dir."""
        self.stop()
        self.fixed_port = self.port
        return self.start(timeout)

    def log_text(self) -> str:
        return "" if self.process is None else self.process.log_text()

    def client(self, **kwargs: object) -> httpx.Client:
        kwargs.setdefault("timeout", 60)
        return httpx.Client(base_url=self.url, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"MirrorProcess({self.url}, cache={self.cache_dir}, {self.process!r})"
