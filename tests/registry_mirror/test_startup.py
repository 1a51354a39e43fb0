"""Start-up failures are one line on stderr and exit 1, before anything logs "ready"; a started
mirror says who it is (`--version`, `ctl status`)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.support.mirror import MirrorProcess, mirror_binary
from tests.support.net import free_port

pytestmark = pytest.mark.integration

DEAD = "http://127.0.0.1:1"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "startup.toml"
    config.write_text(f'builtin_upstreams = false\ndefault_upstream = "dead"\n[upstreams.dead]\nurl = "{DEAD}"\n')
    return config


def _serve(tmp_path: Path, cache_dir: Path, *args: str, wrap: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    argv = [mirror_binary(), "serve", "--config", str(_config(tmp_path)), "--cache-dir", str(cache_dir), *args]
    if wrap:
        argv = [*wrap, " ".join(f"'{a}'" for a in argv)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _assert_one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"registry-mirror: error: {message}\n"
    assert " ready: " not in result.stdout + result.stderr


def test_missing_cache_dir_parent(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted" / "cache"
    result = _serve(tmp_path, missing, "--listen", f"127.0.0.1:{free_port()}")
    _assert_one_line(result, f"cache dir {missing} does not exist, nor does {missing.parent} (is the disk mounted?)")
    assert not missing.parent.exists()


def test_unwritable_cache_dir(tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    # Root writes through permission bits: a read-only mount (in a private mount namespace) it cannot.
    wrap = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o ro tmpfs \'{readonly}\' && exec "$0" "$@"']
    argv = [
        mirror_binary(),
        "serve",
        "--config",
        str(_config(tmp_path)),
        "--cache-dir",
        str(readonly),
        "--listen",
        f"127.0.0.1:{free_port()}",
    ]
    result = subprocess.run([*wrap, *argv], capture_output=True, text=True, timeout=60)
    _assert_one_line(result, f"cache dir {readonly} is not writable: Read-only file system")


def test_cache_dir_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    _assert_one_line(
        _serve(tmp_path, afile, "--listen", f"127.0.0.1:{free_port()}"), f"cache dir {afile} is not a directory"
    )


def test_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = _serve(
        tmp_path,
        tmp_path / "cache",
        "--listen",
        f"127.0.0.1:{taken_port}",
        "--admin-listen",
        f"127.0.0.1:{free_port()}",
    )
    _assert_one_line(result, f"cannot listen on 127.0.0.1:{taken_port} (listen): address already in use")


def test_admin_port_in_use_is_fatal(tmp_path: Path, taken_port: int) -> None:
    result = _serve(
        tmp_path,
        tmp_path / "cache",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--admin-listen",
        f"127.0.0.1:{taken_port}",
    )
    _assert_one_line(result, f"cannot listen on 127.0.0.1:{taken_port} (admin): address already in use")


def test_cache_dir_in_use_by_another_mirror(tmp_path: Path) -> None:
    first = MirrorProcess(tmp_path / "first", {"dead": DEAD}).start()
    try:
        assert first.process is not None
        result = _serve(
            tmp_path,
            first.cache_dir,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
        )
        _assert_one_line(
            result, f"cache dir {first.cache_dir} is in use by another registry-mirror (pid {first.process.pid})"
        )
    finally:
        first.stop()


def test_version() -> None:
    from registry_mirror.version import VERSION

    result = subprocess.run([mirror_binary(), "--version"], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, f"registry-mirror {VERSION}\n")


def test_ready_and_ctl_status_name_the_instance(tmp_path: Path) -> None:
    mirror = MirrorProcess(tmp_path, {"dead": DEAD}).start()
    try:
        from registry_mirror.version import VERSION

        deadline = time.monotonic() + 20
        while not (ready := [line for line in mirror.log_text().splitlines() if " ready: " in line]):
            assert time.monotonic() < deadline, mirror.log_text()
            time.sleep(0.05)
        assert len(ready) == 1 and f"listening on {mirror.host}, admin 127.0.0.1:{mirror.admin_port}" in ready[0]
        admin = f"http://127.0.0.1:{mirror.admin_port}"
        status = httpx.get(f"{admin}/admin/status", timeout=10).json()
        assert status["address"] == mirror.host and status["version"] == VERSION
        assert status["cache_dir"] == str(mirror.cache_dir) and status["upstream_urls"] == {"dead": DEAD}
        assert status["pid"] == mirror.process.pid and status["uptime_seconds"] >= 0
        shown = subprocess.run(
            [mirror_binary(), "ctl", "--admin", admin, "status"], capture_output=True, text=True, timeout=30
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[0].startswith(
            f"mirror     {mirror.host} (admin {admin}), version {VERSION}, pid {mirror.process.pid}, up "
        )
        assert f"cache dir  {mirror.cache_dir}" in shown.stdout
        assert f"upstreams  dead ({DEAD}); default dead" in shown.stdout
    finally:
        mirror.stop()
