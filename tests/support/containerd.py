"""A private containerd 1.6 daemon, hosts.toml writing, and the two real pull paths.

- `ctr_pull`: resolves and fetches inside the ctr process using `--hosts-dir` (ctr ignores
  the daemon's registry config_path).
- `cri_pull`: a CRI ImageService/PullImage gRPC call, which is what kubelet does; the daemon
  then reads `<hosts_dir>/<registry>/hosts.toml` (edits apply without a restart).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .net import free_port
from .procs import ManagedProcess, require_binary
from .run import CommandFailed, run

DISABLED_SNAPSHOTTERS = ("btrfs", "zfs", "devmapper", "aufs")


# -- hosts.toml -------------------------------------------------------------------------
def _require_loopback_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        # Without a scheme containerd tries https and silently falls back to `server`.
        raise ValueError(f"{url!r}: give an explicit http:// or https:// scheme")
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{url!r}: tests may only send traffic to 127.0.0.0/8")


def write_hosts_toml(
    hosts_dir: Path,
    registry: str,
    mirror_url: str | Sequence[str] | None,
    server_url: str,
    override_path: bool = False,
    capabilities: Sequence[str] = ("pull", "resolve"),
    skip_verify: bool = False,
) -> Path:
    """Write `hosts_dir/<registry>/hosts.toml`: mirror host(s) tried in order, then `server`.

    `server_url` must be loopback too: containerd falls back to it whenever a mirror fails,
    so a real upstream there would send test traffic off the machine.
    With no mirror the server is also listed as a `[host]`: containerd 1.6 rejects a file
    without any `[host]` table ("invalid `host` tree"), logs "failed to decode hosts.toml"
    and silently uses its defaults (for docker.io: https://registry-1.docker.io).
    """
    mirrors = [] if mirror_url is None else [mirror_url] if isinstance(mirror_url, str) else list(mirror_url)
    for url in (*mirrors, server_url):
        _require_loopback_url(url)
    caps = ", ".join(f'"{c}"' for c in capabilities)
    lines = [f'server = "{server_url}"', ""]
    for url in mirrors or [server_url]:
        lines += [f'[host."{url}"]', f"  capabilities = [{caps}]"]
        if override_path:
            lines.append("  override_path = true")
        if skip_verify:
            lines.append("  skip_verify = true")
        lines.append("")
    path = Path(hosts_dir) / registry / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


# -- CRI wire format (hand-encoded: the request is one string nested in one message) -----
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_pull_image_request(ref: str) -> bytes:
    """PullImageRequest{image: ImageSpec{image: ref}}."""
    return _length_delimited(1, _length_delimited(1, ref.encode()))


def decode_pull_image_response(body: bytes) -> str:
    """PullImageResponse.image_ref (field 1); containerd puts the config digest there."""
    pos = 0
    while pos < len(body):
        key, pos = _read_varint(body, pos)
        if key & 7 != 2:
            raise ValueError(f"unexpected wire type in PullImageResponse: {key & 7}")
        length, pos = _read_varint(body, pos)
        value, pos = body[pos : pos + length], pos + length
        if key >> 3 == 1:
            return value.decode()
    return ""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


# -- the daemon --------------------------------------------------------------------------
@dataclass(frozen=True)
class PullResult:
    ref: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class ContainerdDaemon:
    """containerd with root, state, sockets and opt under private temp dirs; CRI enabled."""

    def __init__(self, workdir: Path, hosts_dir: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.hosts_dir = Path(hosts_dir) if hosts_dir is not None else self.workdir / "hosts.d"
        # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))
        self.address = str(self.socket_dir / "containerd.sock")
        self.stream_port = 0
        self.process: ManagedProcess | None = None
        self.start_seconds = 0.0

    def _config(self) -> str:
        disabled = ", ".join(f'"io.containerd.snapshotter.v1.{s}"' for s in DISABLED_SNAPSHOTTERS)
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.workdir / "root"}"
state = "{self.socket_dir / "state"}"
disabled_plugins = [{disabled}]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = "{self.socket_dir / "debug.sock"}"
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.workdir / "opt"}"
{cri}]
  stream_server_address = "127.0.0.1"
  stream_server_port = "{self.stream_port}"
{cri}.containerd]
  snapshotter = "native"
{cri}.cni]
  bin_dir = "{self.workdir / "cni" / "bin"}"
  conf_dir = "{self.workdir / "cni" / "conf"}"
{cri}.registry]
  config_path = "{self.hosts_dir}"
"""

    def start(self, timeout: float = 30.0) -> ContainerdDaemon:
        binary = require_binary("containerd")
        require_binary("ctr")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        self.stream_port = free_port()
        config = self.workdir / "containerd.toml"
        config.write_text(self._config())
        started = time.monotonic()
        self.process = ManagedProcess([binary, "--config", str(config)], self.workdir / "containerd.log").start()
        deadline = started + timeout
        while run(["ctr", "--address", self.address, "version"], check=False, timeout=10).returncode:
            if not self.process.alive() or time.monotonic() > deadline:
                log = self.process.log_tail()
                self.stop()
                raise RuntimeError(f"containerd did not start:\n{log}")
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> ContainerdDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        return "" if self.process is None else self.process.log_text()

    def hosts_toml_errors(self) -> list[str]:
        """Daemon log lines saying a hosts.toml was rejected (CRI then ignores it silently)."""
        return [line for line in self.log_text().splitlines() if "hosts.toml" in line and "level=error" in line]

    # -- ctr ---------------------------------------------------------------------------
    def ctr(
        self, *args: str, namespace: str = "default", check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run(["ctr", "--address", self.address, "--namespace", namespace, *args], check=check, timeout=timeout)

    def ctr_pull(
        self,
        ref: str,
        hosts_dir: Path | None = None,
        namespace: str = "default",
        plain_http: bool = False,
        all_platforms: bool = False,
        check: bool = True,
        timeout: float = 300,
        check_hosts_toml: bool = True,
    ) -> PullResult:
        """`ctr images pull --hosts-dir DIR --snapshotter native REF` (REF fully qualified).

        hosts.toml URLs carry their own scheme, so plain HTTP needs no `--plain-http`;
        the flag only matters for a registry with no hosts.toml at all.
        """
        args = ["images", "pull", "--hosts-dir", str(hosts_dir or self.hosts_dir), "--snapshotter", "native"]
        if plain_http:
            args.append("--plain-http")
        if all_platforms:
            args.append("--all-platforms")
        result = self.ctr(*args, ref, namespace=namespace, check=False, timeout=timeout)
        pulled = PullResult(ref, result.returncode, result.stdout + result.stderr)
        if check and not pulled.ok:
            raise CommandFailed(["ctr", *args, ref], result.returncode, pulled.output)
        if check_hosts_toml and "failed to decode hosts.toml" in pulled.output:
            raise AssertionError(f"ctr rejected a hosts.toml and used its defaults:\n{pulled.output}")
        return pulled

    def cri_pull(self, ref: str, timeout: float = 120, check_hosts_toml: bool = True) -> str:
        """CRI runtime.v1.ImageService/PullImage; returns image_ref (the config digest).

        Raises grpc.RpcError on failure. Images land in the k8s.io namespace. With
        `check_hosts_toml`, a hosts.toml the daemon rejected (so it silently pulled from its
        defaults) fails the call even if the pull itself worked.
        """
        import grpc  # only the CRI tests need grpcio loaded

        errors_before = len(self.hosts_toml_errors())
        try:
            with grpc.insecure_channel(f"unix://{self.address}") as channel:
                call = channel.unary_unary("/runtime.v1.ImageService/PullImage")
                response = call(encode_pull_image_request(ref), timeout=timeout)
        finally:
            rejected = self.hosts_toml_errors()[errors_before:]
            if check_hosts_toml and rejected:
                raise AssertionError("containerd rejected a hosts.toml: " + "\n".join(rejected))
        return decode_pull_image_response(response)

    # -- inspection and cleanup ----------------------------------------------------------
    def namespaces(self) -> list[str]:
        return self.ctr("namespaces", "ls", "-q").stdout.split()

    def image_refs(self, namespace: str = "default") -> list[str]:
        return self.ctr("images", "ls", "-q", namespace=namespace).stdout.split()

    def content_digests(self) -> set[str]:
        """Committed content over every namespace (metadata is per namespace)."""
        digests: set[str] = set()
        for namespace in self.namespaces():
            digests.update(self.ctr("content", "ls", "-q", namespace=namespace).stdout.split())
        return digests

    def remove_all_images(self) -> None:
        """Make the next pull fetch everything again; fail if any content survives."""
        for namespace in self.namespaces():
            refs = self.image_refs(namespace)
            if refs:
                self.ctr("images", "rm", "--sync", *refs, namespace=namespace)
            # An interrupted pull leaves a lease that keeps its content alive.
            leases = self.ctr("leases", "ls", "-q", namespace=namespace).stdout.split()
            if leases:
                self.ctr("leases", "rm", "--sync", *leases, namespace=namespace)
        leftover = self.content_digests()
        if leftover:
            raise AssertionError(f"containerd content survived image removal: {sorted(leftover)}")
