"""`registry-mirror tracker` flags: derived from TrackerSettings, parsed like the mirror's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_mirror.cli import _main as cli
from registry_mirror.cli import _tracker as cli_tracker
from registry_mirror.config import TRACKER_KEYS, ConfigError, TrackerSettings, load_tracker_settings


def _flags(*argv: str) -> TrackerSettings:
    args = cli.build_parser("tracker").parse_args(["tracker", *argv])
    return load_tracker_settings(vars(args))


def test_no_flags_are_the_dataclass_defaults() -> None:
    assert _flags() == TrackerSettings()


def test_every_field_has_its_flag_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["tracker", "--help"])
    shown = capsys.readouterr().out
    assert {key.flag for key in TRACKER_KEYS} >= {"--listen", "--token-file", "--peer-ttl", "--auth"}
    for key in TRACKER_KEYS:
        assert f"{key.flag} " in shown or f"{key.flag}," in shown, key.flag
    assert "--no-auth" in shown and "[default 30.0]" in shown


def test_flags_use_the_settings_value_syntax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    flags = _flags("--listen", "[::1]:0", "--peer-ttl", "1m", "--report-rate", "0.5", "--no-auth",
                   "--token-file", "tok", "--max-connections-per-client", "0", "--log-level", "WARNING")  # fmt: skip
    assert (flags.listen_host, flags.listen_port, flags.peer_ttl, flags.report_rate) == ("::1", 0, 60.0, 0.5)
    assert flags.auth is False and flags.token_file == tmp_path / "tok"
    assert (flags.max_connections_per_client, flags.log_level) == (0, "warning")


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--listen", "nope"], "listen"), (["--peer-ttl", "0"], "peer_ttl"), (["--report-rate", "0"], "report_rate"),
     (["--max-records-per-peer", "0"], "max_records_per_peer"), (["--log-level", "loud"], "log_level")],
)  # fmt: skip
def test_a_bad_flag_is_one_line_naming_field_and_flag_exit_2(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _flags(*argv)
    assert caught.value.field == field and f"(from {argv[0]})" in str(caught.value)
    assert cli.main(["tracker", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"registry-mirror: error: {field}: ") and argv[0] in err
    assert cli_tracker.main(["tracker", *argv]) == 2


def test_server_settings_from_the_flags(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("shared-token\n")
    flags = _flags("--listen", "0.0.0.0:6060", "--token-file", str(tmp_path / "tok"), "--store", "memory",
                   "--max-lease-ttl", "5m", "--max-connections-per-client", "7")  # fmt: skip
    server = cli_tracker._settings(flags)
    assert (server.host, server.port, server.store_url, server.tls) == ("0.0.0.0", 6060, "memory", None)
    assert server.tracker.max_lease_ttl == 300.0 and server.tracker.credentials.shared_token == "shared-token"
    assert server.header_limits.max_connections_per_client == 7


def test_every_settings_field_is_declared_with_a_description() -> None:
    import dataclasses

    from registry_mirror.config import _settings as settings
    from registry_mirror.config._fields import help_of

    classes = [settings.Settings, settings.UpstreamSettings, settings.CacheSettings, settings.P2PSettings,
               settings.CatalogSettings, settings.HubSettings, settings.AdminSettings, settings.LimitSettings,
               settings.BlockRule, settings.SignatureRule, settings.TelemetrySettings, TrackerSettings]  # fmt: skip
    for cls in classes:
        for field in dataclasses.fields(cls):
            assert help_of(cls, field.name).strip(), f"{cls.__name__}.{field.name}"
