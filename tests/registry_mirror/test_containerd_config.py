"""`hosts-toml --containerd-config`: the node's config.toml is pointed at the hosts directory, and the
real containerd reads the result (`containerd config dump`)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from tests.support.mirror import mirror_binary

NODE_CONFIG_V2 = """# the node's own config: comments and settings survive the edit
version = 2
root = "{root}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"  # pinned by the platform team
"""


def _hosts_toml(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [mirror_binary(), "hosts-toml", "--mirror=http://10.0.0.7:5000", "--registry=docker.io", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_v2_config_gets_config_path_once_and_containerd_reads_it(tmp_path: Path) -> None:
    config, hosts, marker = tmp_path / "config.toml", tmp_path / "certs.d", tmp_path / "restarted"
    config.write_text(NODE_CONFIG_V2.format(root=tmp_path / "root"))
    restart = f"--restart-command=touch {marker}"
    done = _hosts_toml(f"--out={hosts}", f"--containerd-config={config}", restart)
    assert done.returncode == 0, done.stderr
    assert marker.exists() and (hosts / "docker.io" / "hosts.toml").exists()
    text = config.read_text()
    assert "# pinned by the platform team" in text and text.startswith("# the node's own config")
    dump = subprocess.run(
        ["containerd", "--config", str(config), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    cri = tomllib.loads(dump)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"]["config_path"] == str(hosts)
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"

    marker.unlink()
    again = _hosts_toml(f"--out={hosts}", f"--containerd-config={config}", restart)
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert not marker.exists() and config.read_text() == text  # no restart when nothing changed


def test_v3_config_gets_local_image_pull(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('version = 3\n[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "overlayfs"\n')
    done = _hosts_toml("--out=/etc/containerd/certs.d", f"--containerd-config={config}", "--local-image-pull")
    assert done.returncode == 0, done.stderr
    images = tomllib.loads(config.read_text())["plugins"]["io.containerd.cri.v1.images"]
    assert images == {
        "snapshotter": "overlayfs",
        "use_local_image_pull": True,
        "registry": {"config_path": "/etc/containerd/certs.d"},
    }


def test_legacy_mirrors_and_unknown_versions_are_one_line_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://m"]\n'
    )
    before = config.read_text()
    for text, expected in (
        (before, "registry.mirrors is set"),
        ("version = 1\n", "version 1"),
        ("version = [\n", "not valid TOML"),
    ):
        config.write_text(text)
        done = _hosts_toml(f"--out={tmp_path / 'certs.d'}", f"--containerd-config={config}")
        assert done.returncode == 2 and expected in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
        assert config.read_text() == text
    assert not (tmp_path / "certs.d").exists()  # nothing written when the config edit failed


def test_remove_needs_no_mirror(tmp_path: Path) -> None:
    assert _hosts_toml(f"--out={tmp_path}").returncode == 0
    (tmp_path / "own.example").mkdir()
    (tmp_path / "own.example" / "hosts.toml").write_text('server = "https://own.example"\n')
    done = subprocess.run(
        [mirror_binary(), "hosts-toml", "--remove", f"--out={tmp_path}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "removed" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["own.example"]  # an operator's file stays
