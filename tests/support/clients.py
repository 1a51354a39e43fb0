"""Real pull clients other than containerd: skopeo (hermetic) and oras-py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .procs import require_binary
from .run import run

# As root skopeo writes a blob-info cache under /var/lib/containers/cache whatever flags it
# gets; a private mount namespace with a tmpfs over /var/lib throws that away on exit.
_HERMETIC_SH = 'mount -t tmpfs tmpfs /var/lib && exec "$@"'


def hermetic(argv: Sequence[str]) -> list[str]:
    """`argv` run in a private mount namespace with a tmpfs over /var/lib (no host state touched)."""
    return [require_binary("unshare"), "-m", "--propagation", "private", "--", "sh", "-c", _HERMETIC_SH, "sh", *argv]


def skopeo(args: Sequence[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`skopeo --insecure-policy ARGS`, hermetic."""
    return run(hermetic([require_binary("skopeo"), "--insecure-policy", *args]), timeout=timeout, check=check)


def skopeo_copy_from(
    ref: str, out_dir: Path, tls_verify: bool = False, extra_args: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Pull `ref` (host:port/repo:tag or @digest) into a `dir:` layout at `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return skopeo(
        ["copy", f"--src-tls-verify={str(tls_verify).lower()}", *extra_args, f"docker://{ref}", f"dir:{out_dir}"]
    )


def skopeo_inspect_raw(ref: str, tls_verify: bool = False) -> str:
    """The manifest bytes exactly as the registry serves them."""
    return skopeo(["inspect", "--raw", f"--tls-verify={str(tls_verify).lower()}", f"docker://{ref}"]).stdout


def oras_pull(ref: str, out_dir: Path, insecure: bool = True) -> list[Path]:
    """Pull an artifact with oras-py over plain HTTP; returns the written files."""
    import oras.client  # imported late: it pulls in requests, which only these tests need

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    client = oras.client.OrasClient(hostname=ref.split("/", 1)[0], insecure=insecure, tls_verify=False)
    return [Path(p) for p in client.pull(target=ref, outdir=str(out_dir))]


def podman_pull(
    ref: str, registries_conf: Path, workdir: Path, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`podman pull REF` with a private registries.conf, storage (vfs) and signature policy, in a
    private mount namespace like skopeo. podman's --runroot must be short (at most 50 characters)."""
    binary = require_binary("podman")
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    runroot = tempfile.mkdtemp(prefix="podrun-", dir="/tmp")
    try:
        argv = [
            "env",
            f"CONTAINERS_REGISTRIES_CONF={registries_conf}",
            binary,
            "--root",
            str(workdir / "root"),
            "--runroot",
            runroot,
            "--storage-driver",
            "vfs",
            "pull",
            "--signature-policy",
            str(policy),
            "--quiet",
            ref,
        ]
        return run(hermetic(argv), timeout=timeout, check=check)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
