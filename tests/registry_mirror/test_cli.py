from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import registry_mirror
from registry_mirror.cli import _main as cli
from registry_mirror.config._settings import GiB, Settings

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process, as users and tooling run it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MIRROR_")}
    return subprocess.run(
        [sys.executable, "-m", "registry_mirror.cli._main", *args],
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
        (["--piece-size", "1KiB"], "p2p.piece_size"),
        (["--tracker", "ftp://x"], "p2p.tracker"),
        (["--peer-ca", "README.md"], "p2p.peer_cert"),
        (["--catalog", "ghcr.io/org/catalog:v1"], "catalog.trusted_keys"),
        (["--admin-listen", "0.0.0.0:5001"], "admin.token"),
        (["--otlp-endpoint", "grpc://x"], "telemetry.otlp_endpoint"),
    ],
)
def test_bad_serve_flag_exits_2_with_one_line_naming_the_field(flags: list[str], field: str) -> None:
    result = run_cli("serve", *flags)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"registry-mirror: error: {field}: ")


def test_hosts_toml_command_writes_the_golden_files(tmp_path: Path) -> None:
    registries = [arg for name in sorted(p.name for p in (REPO / "hosts.toml.d").iterdir())
                  for arg in ("--registry", name)]  # fmt: skip
    result = run_cli("hosts-toml", "--mirror", "http://127.0.0.1:5000", *registries, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    golden = {p.relative_to(REPO / "hosts.toml.d"): p.read_bytes() for p in (REPO / "hosts.toml.d").rglob("*.toml")}
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
        ["serve", "--no-such-flag"],
        ["no-such-command"],
        [],
    ],
)  # fmt: skip
def test_usage_errors_exit_2_with_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("registry-mirror: error: ")


def test_hosts_toml_without_mirror_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hosts-toml", "--registry", "docker.io", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mirror" in err and err.startswith("registry-mirror: error: ")


def test_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in cli.SUBCOMMANDS:
        assert name in result.stdout


@pytest.fixture
def server_stub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Settings]]:
    """Stands in for the lead's registry_mirror.runtime._server to see what the CLI hands it."""
    calls: list[tuple[str, Settings]] = []
    stub = types.ModuleType("registry_mirror.runtime._server")
    stub.run = lambda settings, config_file=None: calls.append(("run", settings)) or 0  # type: ignore[attr-defined]
    stub.verify_cache = lambda settings: calls.append(("verify", settings)) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "registry_mirror.runtime._server", stub)
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


def test_serve_has_a_flag_for_every_flagged_setting() -> None:
    from registry_mirror.config import SETTING_KEYS

    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for key in (k for k in SETTING_KEYS if k.cli):
        assert f"{key.flag} " in result.stdout or f"{key.flag}," in result.stdout, key.flag
    assert set(cli.serve_flags()) >= {k.cli for k in SETTING_KEYS if k.cli}


def test_serve_passes_p2p_catalog_hub_admin_and_telemetry_flags(server_stub, tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem", "a.pub", "b.pub"):
        (tmp_path / name).write_text("pem\n")
    (tmp_path / "tracker-token").write_text("tok\n")
    argv = ["serve", "--tracker", "embedded", "--peer-listen", "127.0.0.1:5002",
            "--advertise", "http://127.0.0.1:5002", "--zone", "z1", "--piece-size", "1MiB",
            "--tracker-token-file", str(tmp_path / "tracker-token"),
            "--peer-ca", str(tmp_path / "ca.pem"), "--peer-cert", str(tmp_path / "cert.pem"),
            "--peer-key", str(tmp_path / "key.pem"),
            "--catalog", "127.0.0.1:5101/cat/a:v1", "--catalog", "127.0.0.1:5101/cat/b:v1",
            "--trusted-key", str(tmp_path / "a.pub"), "--trusted-key", str(tmp_path / "b.pub"),
            "--catalog-poll-interval", "5s", "--catalog-insecure",
            "--hf-upstream", "http://127.0.0.1:5201", "--modelscope-upstream", "http://127.0.0.1:5202",
            "--admin-listen", "127.0.0.1:0", "--otlp-endpoint", "http://127.0.0.1:4318"]  # fmt: skip
    assert cli.main(argv) == 0
    ((_, settings),) = server_stub
    p2p = settings.p2p
    assert (p2p.tracker, p2p.peer_listen, p2p.advertise, p2p.zone) == (
        "embedded",
        "127.0.0.1:5002",
        "http://127.0.0.1:5002",
        "z1",
    )
    assert p2p.piece_size == 1024 * 1024 and p2p.tracker_token == "tok"
    assert (p2p.peer_ca, p2p.peer_cert, p2p.peer_key) == tuple(tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    assert settings.catalog.sources == ("127.0.0.1:5101/cat/a:v1", "127.0.0.1:5101/cat/b:v1")
    assert settings.catalog.trusted_keys == (tmp_path / "a.pub", tmp_path / "b.pub")
    assert settings.catalog.poll_interval == 5.0 and settings.catalog.insecure is True
    assert settings.hf.upstream == "http://127.0.0.1:5201"
    assert settings.modelscope.upstream == "http://127.0.0.1:5202"
    assert settings.admin.listen == "127.0.0.1:0"
    assert settings.telemetry.otlp_endpoint == "http://127.0.0.1:4318"


def test_no_form_of_an_on_off_flag_overrides_the_environment(server_stub, monkeypatch) -> None:
    monkeypatch.setenv("REGISTRY_MIRROR_CATALOG_INSECURE", "true")
    assert cli.main(["serve", "--no-catalog-insecure"]) == 0
    assert cli.main(["serve"]) == 0
    assert [s.catalog.insecure for _, s in server_stub] == [False, True]


def test_serve_help_shows_defaults() -> None:
    result = run_cli("serve", "--help")
    text = " ".join(result.stdout.split())
    assert 'default "127.0.0.1:5000"; listen' in text
    assert 'default "~/.cache/registry-mirror"; cache.directory' in text
    assert 'default "50GiB"' in text


def test_startup_summary_names_listeners_cache_and_upstreams(tmp_path: Path) -> None:
    from registry_mirror.config import load_settings
    from registry_mirror.runtime._server import startup_summary

    settings = load_settings(
        None,
        {},
        {
            "cache_dir": str(tmp_path),
            "upstream": ["r.test=http://127.0.0.1:5101"],
            "via": ["r.test=http://regional:5000"],
            "peer_listen": "0.0.0.0:5002",
            "tracker": "http://tracker:5050",
        },
    )
    text = "\n".join(startup_summary(settings, None))
    assert "api http://127.0.0.1:5000" in text and "admin 127.0.0.1:5001" in text and "peers 0.0.0.0:5002" in text
    assert f"cache: {tmp_path} (max 50GiB)" in text
    assert "r.test=http://127.0.0.1:5101 via http://regional:5000" in text and "default docker.io" in text
    assert "hf https://huggingface.co" in text and "tracker http://tracker:5050" in text
