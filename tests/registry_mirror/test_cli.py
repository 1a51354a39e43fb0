from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import registry_mirror
from registry_mirror import cli
from registry_mirror.settings import GiB, Settings

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process, as users and tooling run it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MIRROR_")}
    return subprocess.run(
        [sys.executable, "-m", "registry_mirror.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        cwd=REPO,
    )


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--listen", "nowhere"], "listen"),
        (["--cache-max-size", "lots"], "cache.max_size"),
        (["--upstream", "nonsense"], "upstreams"),
    ],
)
def test_bad_serve_flag_exits_2_with_one_line_naming_the_field(
    flags: list[str], field: str
) -> None:
    result = run_cli("serve", *flags)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"registry-mirror: error: {field}: ")


def test_hosts_toml_command_writes_the_golden_files(tmp_path: Path) -> None:
    registries = [arg for name in sorted(p.name for p in (REPO / "hosts.toml.d").iterdir())
                  for arg in ("--registry", name)]  # fmt: skip
    result = run_cli(
        "hosts-toml", "--mirror", "http://127.0.0.1:5000", *registries, "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    golden = {
        p.relative_to(REPO / "hosts.toml.d"): p.read_bytes()
        for p in (REPO / "hosts.toml.d").rglob("*.toml")
    }
    written = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.toml")}
    assert written == golden and len(written) >= 8


def test_hosts_toml_command_options(tmp_path: Path) -> None:
    assert cli.main(["hosts-toml", "--mirror", "http://127.0.0.1:5000/m/v2", "--registry", "127.0.0.1:5101",
                     "--out", str(tmp_path), "--override-path", "--header", "X-A=1"]) == 0  # fmt: skip
    text = (tmp_path / "127.0.0.1:5101" / "hosts.toml").read_text()
    assert "override_path = true" in text and 'X-A = "1"' in text


@pytest.mark.parametrize(
    "args",
    [
        ["hosts-toml", "--mirror", "ftp://x", "--registry", "docker.io", "--out", "o"],
        ["hosts-toml", "--mirror", "http://127.0.0.1:5000", "--registry", "a b", "--out", "o"],
        ["hosts-toml", "--mirror", "http://127.0.0.1:5000", "--registry", "docker.io", "--out", "o", "--header", "x"],
        ["hosts-toml", "--registry", "docker.io", "--out", "o"],
        ["serve", "--no-such-flag"],
        ["no-such-command"],
        [],
    ],
)  # fmt: skip
def test_usage_errors_exit_2_with_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("registry-mirror: error: ")


def test_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in cli.SUBCOMMANDS:
        assert name in result.stdout


@pytest.fixture
def server_stub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Settings]]:
    """Stands in for the lead's registry_mirror.server to see what the CLI hands it."""
    calls: list[tuple[str, Settings]] = []
    stub = types.ModuleType("registry_mirror.server")
    stub.run = lambda settings: calls.append(("run", settings)) or 0  # type: ignore[attr-defined]
    stub.verify_cache = lambda settings: calls.append(("verify", settings)) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "registry_mirror.server", stub)
    monkeypatch.setattr(registry_mirror, "server", stub, raising=False)
    for name in [n for n in os.environ if n.startswith("REGISTRY_MIRROR_")]:
        monkeypatch.delenv(name)
    return calls


def test_serve_passes_the_loaded_settings(server_stub, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('listen = "127.0.0.1:6000"\n[cache]\nmax_size = "2GiB"\n')
    monkeypatch.setenv("REGISTRY_MIRROR_CONFIG", str(config))
    monkeypatch.setenv("REGISTRY_MIRROR_LOG_LEVEL", "debug")
    argv = ["serve", "--listen", "127.0.0.1:7000", "--upstream", "docker.io=http://127.0.0.1:5101",
            "--path-prefix", "mirror/", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert cli.main(argv) == 0
    ((what, settings),) = server_stub
    assert what == "run"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 7000)
    assert settings.cache.max_size == 2 * GiB  # from $REGISTRY_MIRROR_CONFIG
    assert settings.log_level == "debug"
    assert settings.path_prefix == "/mirror"
    assert settings.cache.directory == tmp_path / "cache"
    assert settings.upstream("docker.io").url == "http://127.0.0.1:5101"


def test_cache_verify_returns_the_servers_code(server_stub, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[cache]\ndirectory = "from-file"\n')
    assert cli.main(["cache", "verify", "--config", str(config)]) == 3
    assert server_stub[0][1].cache.directory == tmp_path / "from-file"
    assert cli.main(["cache", "verify", "--config", str(config), "--cache-dir", "/x"]) == 3
    assert server_stub[1][1].cache.directory == Path("/x")


def test_config_error_from_the_file_exits_2(server_stub, tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[cache]\nlow_watermark = 2\n")
    assert cli.main(["serve", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith("registry-mirror: error: cache.low_watermark: ")
    assert cli.main(["serve", "--config", str(tmp_path / "absent.toml")]) == 2
    assert server_stub == []
