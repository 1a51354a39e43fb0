"""olah (PyPI) in offline mode as the Hugging Face origin, serving git repos the test creates.

A repo is a non-bare git repo at `mirrors/{type}s/ORG/NAME`; large files are committed as LFS
pointer files with their objects in `.git/lfs/objects/aa/bb/<sha256>` (no git-lfs needed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, wait_http
from tests.support.procs import ManagedProcess

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"


@dataclass
class HubRepo:
    path: Path
    commit: str
    lfs: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the LFS object

    def lfs_object(self, file_path: str) -> Path:
        oid = self.lfs[file_path]
        return self.path / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }
    result = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)
    return result.stdout.decode().strip()


def write_lfs_object(repo: Path, data_path: Path) -> tuple[str, int]:
    """Moves `data_path` into the repo's LFS store; returns (sha256, size)."""
    digest = hashlib.sha256()
    with open(data_path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    oid, size = digest.hexdigest(), data_path.stat().st_size
    target = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(data_path), target)
    return oid, size


class OlahOrigin:
    """`olah-cli -c config.toml` on a free loopback port, offline, with `mirrors/` as its repos."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.mirrors = workdir / "mirrors"
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        lfs_files: Mapping[str, Path] = {},
        repo_type: str = "model",
    ) -> HubRepo:
        """Commits `files` as plain git blobs and `lfs_files` (moved) as LFS pointers."""
        path = self.mirrors / f"{repo_type}s" / repo_id
        path.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "-q", "-b", "main")
        repo = HubRepo(path, "")
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        for name, source in lfs_files.items():
            oid, size = write_lfs_object(path, source)
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(LFS_POINTER.format(oid=oid, size=size))
            repo.lfs[name] = oid
        _git(path, "add", "-A")
        _git(path, "commit", "-q", "-m", "add files")
        repo.commit = _git(path, "rev-parse", "HEAD")
        return repo

    def start(self) -> OlahOrigin:
        self.port = free_port()
        dead = free_port()  # hf-netloc points at a port nobody listens on: offline for real
        config = self.workdir / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{self.workdir / "cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            f'hf-scheme = "http"\nhf-netloc = "127.0.0.1:{dead}"\nhf-lfs-netloc = "127.0.0.1:{dead}"\n'
            f'mirror-scheme = "http"\nmirror-netloc = "127.0.0.1:{self.port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            "[accessibility]\noffline = true\n"
        )
        olah = Path(sys.executable).parent / "olah-cli"
        self.process = ManagedProcess(
            [str(olah), "-c", str(config)], self.workdir / "olah.log", cwd=self.workdir
        ).start()
        wait_http(f"{self.url}/api/whoami-v2", timeout=30, alive=self.process.alive)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_text(self) -> str:
        return "" if self.process is None else self.process.log_text()
