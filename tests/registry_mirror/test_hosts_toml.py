from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from registry_mirror.cli._hosts_toml import remove_hosts_dir, render_hosts_toml, write_hosts_dir
from registry_mirror.config import BUILTIN_UPSTREAMS, InvalidValue

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "hosts.toml.d"
GOLDEN_MIRROR = "http://127.0.0.1:5000"


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_golden_files_are_regenerated_byte_for_byte(tmp_path: Path) -> None:
    written = write_hosts_dir(tmp_path, BUILTIN_UPSTREAMS, GOLDEN_MIRROR)
    assert len(written) == len(BUILTIN_UPSTREAMS)
    assert files_under(tmp_path) == files_under(GOLDEN)
    assert set(files_under(GOLDEN)) == {f"{name}/hosts.toml" for name in BUILTIN_UPSTREAMS}


@pytest.mark.parametrize("registry", list(BUILTIN_UPSTREAMS))
def test_builtin_server_is_the_real_endpoint(registry: str) -> None:
    document = tomllib.loads(render_hosts_toml(registry, GOLDEN_MIRROR))
    assert document["server"] == BUILTIN_UPSTREAMS[registry]
    assert document["host"] == {GOLDEN_MIRROR: {"capabilities": ["pull", "resolve"]}}


def test_docker_io_file_text() -> None:
    assert render_hosts_toml("docker.io", "http://127.0.0.1:5000/") == (
        "# Written by `registry-mirror hosts-toml`; containerd re-reads it on every pull.\n"
        'server = "https://registry-1.docker.io"\n'
        "\n"
        '[host."http://127.0.0.1:5000"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def test_override_path_headers_and_server() -> None:
    headers = {"X-Mirror-Token": 'a "quoted" \\ value', "x.odd.name": "ünïcode\t"}
    text = render_hosts_toml(
        "127.0.0.1:5101",
        "http://127.0.0.11:5000/mirror/v2",
        server_url="http://127.0.0.1:5101",
        override_path=True,
        headers=headers,
    )
    document = tomllib.loads(text)
    assert document["server"] == "http://127.0.0.1:5101"
    host = document["host"]["http://127.0.0.11:5000/mirror/v2"]
    assert host == {
        "capabilities": ["pull", "resolve"],
        "override_path": True,
        "header": {"X-Mirror-Token": 'a "quoted" \\ value', "x.odd.name": "ünïcode"},
    }


def test_registry_without_builtin_server_names_its_https_endpoint() -> None:
    document = tomllib.loads(render_hosts_toml("registry.internal:8443", GOLDEN_MIRROR))
    assert document["server"] == "https://registry.internal:8443"


def test_remove_deletes_only_files_it_wrote(tmp_path: Path) -> None:
    ours, theirs = write_hosts_dir(tmp_path, ["docker.io", "quay.io"], GOLDEN_MIRROR)
    theirs.write_text('server = "https://quay.io"\n')  # an operator's own file: kept
    (tmp_path / "docker.io" / "ca.crt").write_text("cert")
    write_hosts_dir(tmp_path, ["ghcr.io"], GOLDEN_MIRROR)
    removed = remove_hosts_dir(tmp_path, ["docker.io", "quay.io", "ghcr.io", "gcr.io"])
    assert removed == [ours, tmp_path / "ghcr.io" / "hosts.toml"]
    assert not ours.exists() and (tmp_path / "docker.io" / "ca.crt").exists()
    assert theirs.exists() and not (tmp_path / "ghcr.io").exists()


def test_registry_with_port_gets_its_own_directory(tmp_path: Path) -> None:
    (path,) = write_hosts_dir(tmp_path, ["127.0.0.1:5101"], GOLDEN_MIRROR)
    assert path == tmp_path / "127.0.0.1:5101" / "hosts.toml"
    assert [p.name for p in path.parent.iterdir()] == ["hosts.toml"]  # no temp file left


@pytest.mark.parametrize(
    ("registry", "mirror", "headers"),
    [
        ("docker.io", "ftp://127.0.0.1", None),
        ("docker.io", "http://user:pw@127.0.0.1:5000", None),
        ("docker.io", "http://127.0.0.1:5000?x=1", None),
        ("docker.io", "http://127.0.0.1:99999", None),
        ("Docker.IO/x", "http://127.0.0.1:5000", None),
        ("docker.io", "http://127.0.0.1:5000", {"Bad Name": "v"}),
        ("docker.io", "http://127.0.0.1:5000", {"X-Ok": "line\nbreak"}),
    ],
)
def test_bad_inputs_are_rejected(registry: str, mirror: str, headers: dict[str, str] | None) -> None:
    with pytest.raises(InvalidValue):
        render_hosts_toml(registry, mirror, headers=headers)


@pytest.mark.integration
def test_containerd_pulls_through_the_rendered_mirror_host(tmp_path: Path) -> None:
    """Real ctr reads our file: the pull reaches the mirror host, with ?ns=, and never `server`."""
    from tests.support.containerd import ContainerdDaemon
    from tests.support.images import push_multilayer_image
    from tests.support.net import free_port
    from tests.support.origin import OriginRegistry

    dead = f"127.0.0.1:{free_port()}"  # the "registry": nothing listens, so only the mirror can serve
    with OriginRegistry(tmp_path / "origin") as mirror:  # stands in for the mirror
        image = push_multilayer_image(mirror, "test/app", "v1", [4096], seed="hosts", workdir=tmp_path)
        hosts = tmp_path / "hosts.d"
        write_hosts_dir(hosts, [dead], mirror.url, servers={dead: f"http://{dead}"}, headers={"X-Test": "1"})
        with ContainerdDaemon(tmp_path / "ctd", hosts_dir=hosts) as containerd:
            containerd.ctr_pull(f"{dead}/test/app:v1")
        pulled = [e for e in mirror.access_log() if e.user_agent.startswith("containerd/")]
    assert any(e.path == f"/v2/test/app/manifests/{image.manifest.digest}" for e in pulled)
    assert pulled and all(e.uri.endswith("?ns=" + dead.replace(":", "%3A")) for e in pulled)


def test_files_with_a_header_are_0600(tmp_path: Path) -> None:
    """Issue 11, item 13: a client token in hosts.toml is readable by root only."""
    plain = write_hosts_dir(tmp_path / "plain", ["docker.io"], GOLDEN_MIRROR)[0]
    secret = write_hosts_dir(
        tmp_path / "secret", ["docker.io"], GOLDEN_MIRROR, headers={"Authorization": "Bearer s3cret"}
    )[0]
    assert plain.stat().st_mode & 0o777 == 0o644
    assert secret.stat().st_mode & 0o777 == 0o600
    # Rewriting over a 0644 file does not leave it readable either.
    again = write_hosts_dir(tmp_path / "plain", ["docker.io"], GOLDEN_MIRROR, headers={"X": "y"})[0]
    assert again.stat().st_mode & 0o777 == 0o600


def test_no_fallback_makes_the_mirror_the_only_host() -> None:
    """Issue 11, item 7: containerd falls back to `server` (https://<registry> without one), so a
    blocklist 403 only ends a pull when the server is the mirror too."""
    text = render_hosts_toml("docker.io", GOLDEN_MIRROR, headers={"Authorization": "Bearer t"}, no_fallback=True)
    document = tomllib.loads(text)
    assert document["server"] == GOLDEN_MIRROR
    assert document["header"] == {"Authorization": "Bearer t"}
    assert document["host"] == {
        GOLDEN_MIRROR: {"capabilities": ["pull", "resolve"], "header": {"Authorization": "Bearer t"}}
    }
    assert "registry-1.docker.io" not in text
