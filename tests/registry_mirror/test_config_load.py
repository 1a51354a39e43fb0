from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from registry_mirror.config._load import (
    SECTIONS,
    SETTING_KEYS,
    ConfigError,
    format_size,
    load_blocklist,
    load_settings,
    parse_origin_url,
    parse_path_prefix,
    parse_size,
    serve_flags,
)
from registry_mirror.config._reference import render_example_config, render_reference
from registry_mirror.config._settings import (
    BlockRule,
    GiB,
    KiB,
    MiB,
    Settings,
    SignatureRule,
    UpstreamSettings,
    builtin_upstreams,
)

COSIGN_PUB = Path(__file__).resolve().parents[1] / "fixtures" / "containers-image-cosign" / "cosign.pub"

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Value-Never-Shown"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry-mirror.toml"
    path.write_text(text)
    return path


def error_of(config: Path | None = None, env: dict[str, str] | None = None, **cli: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env or {}, cli)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{caught.value.field}: ")
    return caught.value


def test_defaults_are_the_dataclass_defaults_plus_builtin_upstreams() -> None:
    assert load_settings(None, {}, {}) == Settings(upstreams=builtin_upstreams())


# ---- precedence: CLI > environment > TOML > defaults ----

LAYERED = [
    ("listen", "REGISTRY_MIRROR_LISTEN", "listen", ("127.0.0.1:6001", "127.0.0.1:6002", "127.0.0.1:6003"),
     lambda s: f"{s.listen_host}:{s.listen_port}"),
    ("cache.max_size", "REGISTRY_MIRROR_CACHE_MAX_SIZE", "cache_max_size", ("1GiB", "2GiB", "3GiB"),
     lambda s: f"{s.cache.max_size // GiB}GiB"),
    ("default_upstream", "REGISTRY_MIRROR_DEFAULT_UPSTREAM", "default_upstream", ("ghcr.io", "quay.io", "gcr.io"),
     lambda s: s.default_upstream),
    ("path_prefix", "REGISTRY_MIRROR_PATH_PREFIX", "path_prefix", ("/a", "/b", "/c"), lambda s: s.path_prefix),
    ("log_level", "REGISTRY_MIRROR_LOG_LEVEL", "log_level", ("debug", "warning", "error"), lambda s: s.log_level),
]  # fmt: skip


@pytest.mark.parametrize(("path", "env_name", "cli_name", "values", "read"), LAYERED)
def test_cli_beats_env_beats_toml_beats_defaults(tmp_path, path, env_name, cli_name, values, read) -> None:
    section, _, key = path.rpartition(".")
    config = write(tmp_path, (f"[{section}]\n" if section else "") + f'{key} = "{values[0]}"\n')
    env = {env_name: values[1]}
    assert read(load_settings(config, env, {cli_name: values[2]})) == values[2]
    assert read(load_settings(config, env, {cli_name: None})) == values[1]
    assert read(load_settings(config, {}, {})) == values[0]
    assert read(load_settings(None, {}, {})) != values[0]


def test_cache_dir_from_each_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, '[cache]\ndirectory = "from-file"\n')
    (tmp_path / "sub").mkdir()
    assert load_settings(config, {}, {}).cache.directory == tmp_path / "from-file"
    env = {"REGISTRY_MIRROR_CACHE_DIR": "from-env"}
    assert load_settings(config, env, {}).cache.directory == tmp_path / "from-env"
    assert load_settings(config, env, {"cache_dir": "/abs/dir"}).cache.directory == Path("/abs/dir")


# ---- environment parsing ----


def test_environment_values_are_parsed_from_text() -> None:
    env = {
        "REGISTRY_MIRROR_ACCESS_LOG": "no",
        "REGISTRY_MIRROR_TAG_TTL": "5m",
        "REGISTRY_MIRROR_CACHE_HIGH_WATERMARK": "0.95",
        "REGISTRY_MIRROR_CACHE_CHUNK_SIZE": "256KiB",
        "REGISTRY_MIRROR_UPSTREAMS": "docker.io=http://127.0.0.1:5101/, 127.0.0.1:5102=http://127.0.0.1:5102",
        "REGISTRY_MIRROR_CONFIG": "/not/read/here.toml",
        "UNRELATED": "ignored",
    }
    settings = load_settings(None, env, {})
    assert settings.access_log is False
    assert settings.tag_ttl == 300.0
    assert settings.cache.high_watermark == 0.95
    assert settings.cache.chunk_size == 256 * KiB
    assert settings.upstream("docker.io") == UpstreamSettings(
        name="docker.io", url="http://127.0.0.1:5101", library_prefix=True
    )
    assert settings.upstream("127.0.0.1:5102").url == "http://127.0.0.1:5102"
    assert settings.upstreams[-1].name == "127.0.0.1:5102"


def test_unknown_environment_variable_is_named_but_kubernetes_service_links_are_not() -> None:
    assert error_of(env={"REGISTRY_MIRROR_LISTN": "x"}).field == "REGISTRY_MIRROR_LISTN"
    assert "REGISTRY_MIRROR_LISTEN" in str(error_of(env={"REGISTRY_MIRROR_LISTN": "x"}))
    k8s = {
        "REGISTRY_MIRROR_SERVICE_HOST": "10.0.0.7",
        "REGISTRY_MIRROR_SERVICE_PORT": "5000",
        "REGISTRY_MIRROR_PORT": "tcp://10.0.0.7:5000",
        "REGISTRY_MIRROR_PORT_5000_TCP_ADDR": "10.0.0.7",
    }
    assert load_settings(None, k8s, {}).listen_port == 5000


# ---- upstreams ----


def test_builtin_upstreams_can_be_turned_off(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'builtin_upstreams = false\ndefault_upstream = "127.0.0.1:5101"\n'
        '[upstreams."127.0.0.1:5101"]\nurl = "http://127.0.0.1:5101"\n',
    )
    assert [u.name for u in load_settings(config, {}, {}).upstreams] == ["127.0.0.1:5101"]
    assert error_of(write(tmp_path, "builtin_upstreams = false\n")).field == "default_upstream"


def test_cli_upstream_adds_and_replaces_one_dropping_its_credentials(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    config = write(tmp_path, '[upstreams."docker.io"]\nusername = "u"\npassword_file = "pw"\n')
    from_file = load_settings(config, {}, {})
    assert from_file.upstream("docker.io").password == SECRET  # relative to the file
    settings = load_settings(config, {}, {"upstream": ["docker.io=http://127.0.0.1:9", "extra.io=https://e.io"]})
    assert settings.upstream("docker.io") == UpstreamSettings("docker.io", "http://127.0.0.1:9", library_prefix=True)
    assert settings.upstream("extra.io").url == "https://e.io"
    assert len(settings.upstreams) == len(builtin_upstreams()) + 1


def test_upstream_table_with_every_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    config = write(
        tmp_path,
        '[upstreams."registry.internal:8443"]\nurl = "https://registry.internal:8443/"\n'
        'username = "puller"\npassword_env = "PW"\nca_bundle = "ca.pem"\ninsecure = true\n'
        'connect_timeout = "2s"\nread_timeout = 30\nallow_repositories = ["team/*"]\n'
        "library_prefix = true\n",
    )
    upstream = load_settings(config, {"PW": SECRET}, {}).upstream("registry.internal:8443")
    assert upstream == UpstreamSettings(
        name="registry.internal:8443",
        url="https://registry.internal:8443",
        username="puller",
        password=SECRET,
        ca_bundle=str(tmp_path / "ca.pem"),
        insecure=True,
        connect_timeout=2.0,
        read_timeout=30.0,
        allow_repositories=("team/*",),
        library_prefix=True,
    )
    token = write(tmp_path, '[upstreams."ghcr.io"]\ntoken_env = "TOK"\n')
    assert load_settings(token, {"TOK": SECRET}, {}).upstream("ghcr.io").token == SECRET


def test_secrets_never_appear_in_repr_str_or_errors(tmp_path: Path) -> None:
    config = write(tmp_path, '[upstreams."docker.io"]\nusername = "u"\npassword_env = "PW"\n')
    settings = load_settings(config, {"PW": SECRET}, {})
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    (tmp_path / "tok").write_text(SECRET)
    both = write(
        tmp_path,
        '[upstreams."docker.io"]\nusername = "u"\npassword_env = "PW"\ntoken_file = "tok"\n',
    )
    assert SECRET not in str(error_of(both, {"PW": SECRET}))
    inline = write(tmp_path, f'[upstreams."docker.io"]\npassword = "{SECRET}"\n')
    err = error_of(inline)
    assert err.field == 'upstreams."docker.io".password' and SECRET not in str(err)
    err = error_of(upstream=[f"docker.io=https://user:{SECRET}@registry.example"])
    assert err.field == 'upstreams."docker.io".url' and SECRET not in str(err)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ('url = "ftp://x"', "url"),
        ('url = "https://x/v2"', "url"),
        ('url = "https://x?q=1"', "url"),
        ("username = 5", "username"),
        ('password_file = "missing"\nusername = "u"', "password_file"),
        ('password_env = "UNSET"\nusername = "u"', "password_env"),
        ('password_env = "not a name"', "password_env"),
        ('password_env = "PW"', "username"),
        ('password_env = "PW"\npassword_file = "x"\nusername = "u"', "password_file"),
        ('token_file = "missing"', "token_file"),
        ('token_env = "UNSET"', "token_env"),
        ('ca_bundle = "missing.pem"', "ca_bundle"),
        ('insecure = "yes"', "insecure"),
        ("connect_timeout = 0", "connect_timeout"),
        ('read_timeout = "soon"', "read_timeout"),
        ('allow_repositories = "team/*"', "allow_repositories"),
        ("library_prefix = 1", "library_prefix"),
        ('urll = "https://x"', "urll"),
    ],
)
def test_every_upstream_key_error_names_its_field(tmp_path: Path, table: str, field: str) -> None:
    config = write(tmp_path, f'[upstreams."docker.io"]\n{table}\n')
    assert error_of(config, {"PW": "pw"}).field == f'upstreams."docker.io".{field}'


def test_new_upstream_needs_a_url_and_a_valid_name(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, '[upstreams."new.io"]\nusername = "u"\n')).field == 'upstreams."new.io".url'
    bad_name = write(tmp_path, '[upstreams."Bad Name"]\nurl = "https://x"\n')
    assert error_of(bad_name).field == 'upstreams."Bad Name"'
    assert error_of(upstream=["nonsense"]).field == "upstreams"
    assert error_of(env={"REGISTRY_MIRROR_UPSTREAMS": "docker.io"}).field == "upstreams"


# ---- every scalar key: a bad value names the key, from the file and from the environment ----

BAD_VALUES = {
    "listen": "nope",
    "path_prefix": "a b",
    "default_upstream": "Not Valid!",
    "tag_ttl": "soon",
    "max_stale": "-1",
    "negative_ttl": "forever",
    "confirm_ttl": "later",
    "manifest_max_bytes": "lots",
    "log_level": "loud",
    "access_log": "maybe",
    "cache.directory": "",
    "cache.max_size": "lots",
    "cache.high_watermark": "1.5",
    "cache.low_watermark": "0",
    "cache.min_free_bytes": "-5",
    "cache.complete_abandoned_fills": "perhaps",
    "cache.direct_writes": "sometimes",
    "cache.chunk_size": "1B",
    "cache.scrub_rate": "fast",
    "cache.scrub_min_age": "soon",
    "client_token_file": "missing-token",
    "client_token_env": "not a name",
    "p2p.tracker": "ftp://tracker:5050",
    "p2p.peer_listen": "nope",
    "p2p.advertise": "https://peer/with/path",
    "p2p.zone": "bad zone!",
    "p2p.peer_id": "bad peer id",
    "p2p.piece_size": "1KiB",
    "p2p.tracker_token_file": "missing-token",
    "p2p.tracker_token_env": "not a name",
    "p2p.peer_ca": "missing-ca.pem",
    "p2p.peer_cert": "missing-cert.pem",
    "p2p.peer_key": "missing-key.pem",
    "p2p.max_uploads": "0",
    "p2p.upload_bandwidth": "lots",
    "p2p.origin_concurrency": "many",
    "p2p.stall_timeout": "0",
    "p2p.lease_ttl": "never",
    "catalog.sources": "not-a-reference",
    "catalog.trusted_keys": "missing.pub",
    "catalog.poll_interval": "0",
    "catalog.prefetch_concurrency": "0",
    "catalog.insecure": "maybe",
    "catalog.state_dir": "/dev/null",
    "hf.upstream": "ftp://hub",
    "hf.revision_ttl": "soon",
    "hf.auth_ttl": "-1",
    "modelscope.upstream": "https://hub/with/path",
    "modelscope.revision_ttl": "later",
    "modelscope.auth_ttl": "-5",
    "admin.listen": "nope",
    "admin.token_file": "missing-token",
    "admin.token_env": "not a name",
    "limits.client_rate": "fast",
    "limits.client_burst": "0",
    "limits.upstream_concurrency": "-1",
    "limits.upstream_bandwidth": "lots",
    "limits.max_header_bytes": "12",
    "limits.header_timeout": "0",
    "limits.send_timeout": "0",
    "limits.max_connections_per_client": "-1",
    "telemetry.otlp_endpoint": "ftp://collector",
    "telemetry.service_name": "",
}


def test_bad_values_cover_every_key() -> None:
    assert set(BAD_VALUES) == {key.path for key in SETTING_KEYS}


@pytest.mark.parametrize("key", SETTING_KEYS, ids=lambda key: key.path)
def test_every_key_error_names_its_field(tmp_path: Path, key) -> None:
    section, _, name = key.path.rpartition(".")
    config = write(tmp_path, (f"[{section}]\n" if section else "") + f'{name} = "{BAD_VALUES[key.path]}"\n')
    from_file = error_of(config)
    assert from_file.field == key.path and str(config) in str(from_file)
    from_env = error_of(env={key.env: BAD_VALUES[key.path]})
    assert from_env.field == key.path and key.env in str(from_env)
    if key.cli:
        from_cli = error_of(**{key.cli: BAD_VALUES[key.path]})
        assert from_cli.field == key.path and key.flag in str(from_cli)


def test_cache_max_size_error_message() -> None:
    assert str(error_of(env={"REGISTRY_MIRROR_CACHE_MAX_SIZE": "lots"})) == (
        "cache.max_size: expected a size like 50GiB, got 'lots' (from REGISTRY_MIRROR_CACHE_MAX_SIZE)"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("listn = 1", "listn"),
        ("[cache]\nmaxsize = 1", "cache.maxsize"),
        ("cache = 1", "cache"),
        ("upstreams = 1", "upstreams"),
        ('[upstreams]\n"docker.io" = 1', 'upstreams."docker.io"'),
        ("listen = ", "config"),
    ],
)
def test_unknown_keys_and_bad_tables_are_errors(tmp_path: Path, text: str, field: str) -> None:
    assert error_of(write(tmp_path, text + "\n")).field == field


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    assert "did you mean 'cache.max_size'" in str(error_of(write(tmp_path, "[cache]\nmax_sise = 1\n")))


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    assert error_of(tmp_path / "absent.toml").field == "config"


def test_watermarks_must_be_ordered(tmp_path: Path) -> None:
    config = write(tmp_path, "[cache]\nlow_watermark = 0.9\nhigh_watermark = 0.9\n")
    assert error_of(config).field == "cache.low_watermark"
    ok = load_settings(write(tmp_path, "[cache]\nlow_watermark = 0.5\nhigh_watermark = 1\n"), {}, {})
    assert (ok.cache.low_watermark, ok.cache.high_watermark) == (0.5, 1.0)


def test_default_upstream_must_be_configured() -> None:
    err = error_of(default_upstream="unknown.io")
    assert err.field == "default_upstream" and "docker.io" in str(err)


# ---- value parsers ----


@pytest.mark.parametrize(
    ("text", "size"),
    [("50GiB", 50 * GiB), ("500MB", 500 * 10**6), ("1TB", 10**12), ("1.5KiB", 1536), (1234, 1234),
     ("1234", 1234), ("8 mib", 8 * MiB)],
)  # fmt: skip
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "50G", "-1", "1e9", True, 1.5, ""])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match=r"size like 50GiB|negative"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "prefix"),
    [("", ""), ("/", ""), ("mirror", "/mirror"), ("/mirror/", "/mirror"), ("/a/b", "/a/b")],
)
def test_path_prefix_is_normalised(text: str, prefix: str) -> None:
    assert parse_path_prefix(text) == prefix


@pytest.mark.parametrize("text", ["/a//b", "/../x", "/a b", "/a?b"])
def test_bad_path_prefixes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_path_prefix(text)


def test_listen_accepts_ipv6_and_hostnames() -> None:
    ipv6 = load_settings(None, {}, {"listen": "[::1]:5000"})
    assert (ipv6.listen_host, ipv6.listen_port) == ("::1", 5000)
    assert load_settings(None, {}, {"listen": "localhost:0"}).listen_port == 0
    for bad in ("127.0.0.1", "127.0.0.1:70000", "::1:5000", "[zz]:5000", "-bad-:5000"):
        assert error_of(listen=bad).field == "listen"


def test_origin_urls_are_normalised() -> None:
    assert parse_origin_url("HTTPS://Registry-1.Docker.io/") == "https://registry-1.docker.io"
    assert parse_origin_url("http://[::1]:5000") == "http://[::1]:5000"


# ---- the committed example and reference stay generated from the dataclasses ----


def test_example_config_is_generated() -> None:
    assert (REPO / "config" / "registry-mirror.toml").read_text() == render_example_config()


def test_reference_doc_is_generated() -> None:
    assert (REPO / "docs" / "configuration.md").read_text() == render_reference()


def test_example_config_loads_to_the_defaults() -> None:
    assert load_settings(REPO / "config" / "registry-mirror.toml", {}, {}) == load_settings(None, {}, {})


def test_example_config_uncommented_is_valid_and_says_the_defaults(tmp_path: Path) -> None:
    text = (REPO / "config" / "registry-mirror.toml").read_text()
    uncommented = re.sub(r"(?m)^# (?=\[|[a-z_]+ = )", "", text)
    # every section, the example upstream table, blocklist rule and signature policy
    assert uncommented.count("\n[") == len(SECTIONS) + 3
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cosign.pub").write_bytes(COSIGN_PUB.read_bytes())
    settings = load_settings(write(tmp_path, uncommented), {"EXAMPLE_REGISTRY_PASSWORD": SECRET}, {})
    example = UpstreamSettings(
        name="registry.example.internal",
        url="https://registry.example.internal",
        username="puller",
        password=SECRET,
        via="http://regional-mirror.example.internal:5000",
    )
    rule = BlockRule(
        upstream="docker.io", repository="example/xz-utils", tag="5.6.*",
        reason="CVE-2024-3094: backdoored xz",
    )  # fmt: skip
    defaults = load_settings(None, {}, {})
    policy = SignatureRule(
        name="platform-images", upstream="ghcr.io", repositories=("example-org/*",),
        public_keys=(tmp_path / "keys" / "cosign.pub",), mode="enforce",
    )  # fmt: skip
    assert settings == replace(
        defaults, upstreams=(*defaults.upstreams, example), blocklist=(rule,), signatures=(policy,)
    )
    for key in SETTING_KEYS:
        assert re.search(rf"(?m)^{re.escape(key.path.rpartition('.')[2])} = ", uncommented), key.path


# ---- p2p, catalog, model hubs and operations ----

SECTION_LAYERED = [
    ("p2p.tracker", "tracker", ("http://127.0.0.1:7001", "embedded", "https://127.0.0.1:7003"),
     lambda s: s.p2p.tracker),
    ("p2p.peer_listen", "peer_listen", ("127.0.0.1:7001", "[::1]:7002", "0.0.0.0:7003"),
     lambda s: s.p2p.peer_listen),
    ("p2p.advertise", "advertise", ("http://10.0.0.1:7001", "http://10.0.0.2:7002", "https://10.0.0.3:7003"),
     lambda s: s.p2p.advertise),
    ("p2p.zone", "zone", ("zone-a", "zone-b", "zone-c"), lambda s: s.p2p.zone),
    ("p2p.peer_id", "peer_id", ("node-a", "node-b", "node-c"), lambda s: s.p2p.peer_id),
    ("p2p.piece_size", "piece_size", ("256KiB", "1MiB", "64MiB"), lambda s: format_size(s.p2p.piece_size)),
    ("catalog.poll_interval", "catalog_poll_interval", ("10s", "2m", "1h"),
     lambda s: {10.0: "10s", 120.0: "2m", 3600.0: "1h"}.get(s.catalog.poll_interval)),
    ("hf.upstream", "hf_upstream", ("http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003"),
     lambda s: s.hf.upstream),
    ("modelscope.upstream", "modelscope_upstream",
     ("http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003"), lambda s: s.modelscope.upstream),
    ("admin.listen", "admin_listen", ("127.0.0.1:7001", "[::1]:7002", "localhost:7003"), lambda s: s.admin.listen),
    ("telemetry.otlp_endpoint", "otlp_endpoint",
     ("http://127.0.0.1:4318", "http://127.0.0.1:4317", "http://127.0.0.1:4318/v1/traces"),
     lambda s: s.telemetry.otlp_endpoint),
]  # fmt: skip


@pytest.mark.parametrize(("path", "cli_name", "values", "read"), SECTION_LAYERED)
def test_section_flags_cli_beats_env_beats_toml_beats_defaults(tmp_path, path, cli_name, values, read) -> None:
    section, _, key = path.partition(".")
    config = write(tmp_path, f'[{section}]\n{key} = "{values[0]}"\n')
    env = {f"REGISTRY_MIRROR_{path.replace('.', '_').upper()}": values[1]}
    assert read(load_settings(config, env, {cli_name: values[2]})) == values[2]
    assert read(load_settings(config, env, {cli_name: None})) == values[1]
    assert read(load_settings(config, {}, {})) == values[0]
    assert read(load_settings(None, {}, {})) != values[0]


def test_every_flagged_key_has_a_precedence_test() -> None:
    tested = {p for p, *_ in LAYERED} | {p for p, *_ in SECTION_LAYERED}
    tested |= {"cache.directory", "catalog.insecure",
               "catalog.sources", "catalog.trusted_keys", "p2p.tracker_token_file",
               "p2p.peer_ca", "p2p.peer_cert", "p2p.peer_key"}  # fmt: skip
    assert {key.path for key in SETTING_KEYS if key.cli} == tested


def test_unflagged_section_keys_from_file_and_environment(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[p2p]\nmax_uploads = 4\nupload_bandwidth = "100MB"\norigin_concurrency = 2\n'
        'stall_timeout = "2s"\nlease_ttl = 10\n'
        "[catalog]\nprefetch_concurrency = 2\n"
        '[hf]\nrevision_ttl = "5m"\nauth_ttl = 30\n'
        "[limits]\nclient_rate = 50\nclient_burst = 20\nupstream_concurrency = 3\n"
        'upstream_bandwidth = "1GiB"\n'
        '[telemetry]\nservice_name = "mirror-a"\n',
    )
    settings = load_settings(config, {}, {})
    assert settings.p2p.max_uploads == 4 and settings.p2p.upload_bandwidth == 100 * 10**6
    assert (settings.p2p.origin_concurrency, settings.p2p.stall_timeout) == (2, 2.0)
    assert settings.p2p.lease_ttl == 10.0 and settings.catalog.prefetch_concurrency == 2
    assert (settings.hf.revision_ttl, settings.hf.auth_ttl) == (300.0, 30.0)
    assert settings.modelscope == Settings().modelscope  # [hf] does not leak into [modelscope]
    assert (settings.limits.client_rate, settings.limits.client_burst) == (50.0, 20)
    assert settings.limits.upstream_concurrency == 3
    assert settings.limits.upstream_bandwidth == GiB
    assert settings.telemetry.service_name == "mirror-a"
    env = {"REGISTRY_MIRROR_P2P_MAX_UPLOADS": "8", "REGISTRY_MIRROR_LIMITS_CLIENT_RATE": "2.5",
           "REGISTRY_MIRROR_CATALOG_STATE_DIR": "state", "REGISTRY_MIRROR_MODELSCOPE_AUTH_TTL": "2m"}  # fmt: skip
    from_env = load_settings(config, env, {})
    assert from_env.p2p.max_uploads == 8 and from_env.limits.client_rate == 2.5
    assert from_env.catalog.state_dir == Path.cwd() / "state"
    assert from_env.catalog_state_dir() == Path.cwd() / "state"
    assert from_env.modelscope.auth_ttl == 120.0 and from_env.modelscope.upstream.endswith("modelscope.cn")


def test_section_defaults() -> None:
    settings = load_settings(None, {}, {})
    assert settings.p2p.piece_size == 4 * MiB and settings.p2p.tracker == ""
    assert settings.hf.upstream == "https://huggingface.co"
    assert settings.modelscope.upstream == "https://www.modelscope.cn"
    assert settings.admin.listen == "127.0.0.1:5001" and settings.admin.token is None
    assert settings.limits.client_burst == 200 and settings.client_token is None
    assert settings.catalog_state_dir() == settings.cache.directory / "catalog"
    assert settings.telemetry.service_name == "registry-mirror" and settings.blocklist == ()


@pytest.mark.parametrize(("path", "flag"), [("catalog.insecure", "catalog_insecure")])
def test_on_off_flags_layer(tmp_path: Path, path: str, flag: str) -> None:
    section, _, key = path.partition(".")
    read = lambda s: getattr(getattr(s, section), key)  # noqa: E731
    config = write(tmp_path, f"[{section}]\n{key} = true\n")
    env = {f"REGISTRY_MIRROR_{path.replace('.', '_').upper()}": "off"}
    assert read(load_settings(None, {}, {})) is False
    assert read(load_settings(config, {}, {})) is True
    assert read(load_settings(config, env, {})) is False
    assert read(load_settings(config, env, {flag: True})) is True
    assert read(load_settings(config, {}, {flag: False})) is False


def _keys(tmp_path: Path, *names: str) -> list[Path]:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_text("-----BEGIN PUBLIC KEY-----\n")
    return paths


def test_catalog_lists_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a, b, c = _keys(tmp_path, "a.pub", "b.pub", "c.pub")
    config = write(tmp_path, '[catalog]\nsources = ["127.0.0.1:5101/cat/one:v1"]\ntrusted_keys = ["a.pub"]\n')
    from_file = load_settings(config, {}, {}).catalog
    assert from_file.sources == ("127.0.0.1:5101/cat/one:v1",) and from_file.trusted_keys == (a,)
    env = {"REGISTRY_MIRROR_CATALOG_SOURCES": "ghcr.io/o/c:1, localhost:5000/c@sha256:" + "0" * 64,
           "REGISTRY_MIRROR_CATALOG_TRUSTED_KEYS": "a.pub,b.pub"}  # fmt: skip
    from_env = load_settings(config, env, {}).catalog
    assert from_env.sources == ("ghcr.io/o/c:1", "localhost:5000/c@sha256:" + "0" * 64)
    assert from_env.trusted_keys == (a, b)
    cli = {"catalog": ["registry.example:443/x/y:z"], "trusted_key": [str(c)]}
    from_cli = load_settings(config, env, cli).catalog
    assert from_cli.sources == ("registry.example:443/x/y:z",) and from_cli.trusted_keys == (c,)


def test_catalog_sources_need_trusted_keys(tmp_path: Path) -> None:
    err = error_of(catalog=["ghcr.io/org/catalog:v1"])
    assert err.field == "catalog.trusted_keys" and "--catalog" in str(err)
    (key,) = _keys(tmp_path, "k.pub")
    ok = load_settings(None, {}, {"catalog": ["ghcr.io/org/catalog:v1"], "trusted_key": [str(key)]})
    assert ok.catalog.sources == ("ghcr.io/org/catalog:v1",)
    assert load_settings(None, {}, {"trusted_key": [str(key)]}).catalog.sources == ()


@pytest.mark.parametrize(
    "ref",
    ["catalog:v1", "docker.io/org/catalog", "ghcr.io/Org/catalog:v1", "ghcr.io/o/c:bad tag",
     "ghcr.io/o/c@sha256:abc", "ghcr.io//c:v1"],
)  # fmt: skip
def test_bad_catalog_sources(ref: str) -> None:
    assert error_of(catalog=[ref]).field == "catalog.sources"


def test_peer_tls_files_all_three_or_none(tmp_path: Path) -> None:
    ca, cert, key = _keys(tmp_path, "ca.pem", "cert.pem", "key.pem")
    all_three = load_settings(None, {}, {"peer_ca": str(ca), "peer_cert": str(cert), "peer_key": str(key)})
    assert (all_three.p2p.peer_ca, all_three.p2p.peer_cert, all_three.p2p.peer_key) == (ca, cert, key)
    assert error_of(peer_ca=str(ca)).field == "p2p.peer_cert"
    assert error_of(peer_ca=str(ca), peer_cert=str(cert)).field == "p2p.peer_key"
    assert error_of(peer_key=str(key), peer_cert=str(cert)).field == "p2p.peer_ca"
    err = error_of(peer_ca=str(ca), peer_cert=str(cert), peer_key=str(tmp_path / "absent.pem"))
    assert err.field == "p2p.peer_key" and "--peer-key" in str(err)
    # A later layer may turn a file's setting off with "".
    config = write(tmp_path, f'[p2p]\npeer_ca = "{ca}"\npeer_cert = "{cert}"\npeer_key = "{key}"\n')
    env = {"REGISTRY_MIRROR_P2P_PEER_CA": "", "REGISTRY_MIRROR_P2P_PEER_CERT": "",
           "REGISTRY_MIRROR_P2P_PEER_KEY": ""}  # fmt: skip
    assert load_settings(config, env, {}).p2p.peer_ca is None


def test_tracker_token_sources_and_precedence(tmp_path: Path) -> None:
    (tmp_path / "file-token").write_text("from-file\n")
    (tmp_path / "flag-token").write_text("from-flag")
    config = write(tmp_path, '[p2p]\ntracker_token_file = "file-token"\n')
    assert load_settings(config, {}, {}).p2p.tracker_token == "from-file"
    env = {"REGISTRY_MIRROR_P2P_TRACKER_TOKEN_ENV": "TRACKER_TOKEN", "TRACKER_TOKEN": "from-env"}
    assert load_settings(config, env, {}).p2p.tracker_token == "from-env"  # env replaces the file
    flag = {"tracker_token_file": str(tmp_path / "flag-token")}
    assert load_settings(config, env, flag).p2p.tracker_token == "from-flag"
    both = write(tmp_path, '[p2p]\ntracker_token_file = "file-token"\ntracker_token_env = "T"\n')
    assert error_of(both, {"T": "x"}).field == "p2p.tracker_token_file"
    unset = {"REGISTRY_MIRROR_P2P_TRACKER_TOKEN_ENV": "UNSET_TOKEN"}
    err = error_of(env=unset)
    assert err.field == "p2p.tracker_token_env" and "REGISTRY_MIRROR_P2P_TRACKER_TOKEN_ENV" in str(err)
    (tmp_path / "empty").write_text("\n")
    assert error_of(tracker_token_file=str(tmp_path / "empty")).field == "p2p.tracker_token_file"


def test_client_and_admin_tokens(tmp_path: Path) -> None:
    (tmp_path / "client").write_text(SECRET)
    config = write(tmp_path, 'client_token_file = "client"\n[admin]\ntoken_env = "ADMIN_TOKEN"\n')
    settings = load_settings(config, {"ADMIN_TOKEN": SECRET + "-admin"}, {})
    assert settings.client_token == SECRET and settings.admin.token == SECRET + "-admin"
    assert load_settings(None, {"REGISTRY_MIRROR_CLIENT_TOKEN_ENV": "C", "C": "c"}, {}).client_token == "c"


@pytest.mark.parametrize("listen", ["0.0.0.0:5001", "10.1.2.3:5001", "[::]:5001", "node.example:5001"])
def test_admin_token_required_off_loopback(listen: str) -> None:
    err = error_of(admin_listen=listen)
    assert err.field == "admin.token" and "--admin-listen" in str(err)
    env = {"REGISTRY_MIRROR_ADMIN_TOKEN_ENV": "T", "T": SECRET}
    assert load_settings(None, env, {"admin_listen": listen}).admin.token == SECRET


@pytest.mark.parametrize("listen", ["127.0.0.1:5001", "127.0.0.2:0", "[::1]:5001", "localhost:5001", ""])
def test_admin_on_loopback_or_off_needs_no_token(listen: str) -> None:
    assert load_settings(None, {}, {"admin_listen": listen}).admin.listen == listen


def test_new_secrets_never_appear_in_repr_str_or_errors(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text(SECRET)
    env = {"REGISTRY_MIRROR_CLIENT_TOKEN_ENV": "S", "REGISTRY_MIRROR_ADMIN_TOKEN_ENV": "S", "S": SECRET,
           "REGISTRY_MIRROR_P2P_TRACKER_TOKEN_FILE": str(tmp_path / "tok")}  # fmt: skip
    settings = load_settings(None, env, {})
    assert (settings.client_token, settings.admin.token, settings.p2p.tracker_token) == (SECRET,) * 3
    for text in (repr(settings), str(settings), repr(settings.p2p), repr(settings.admin)):
        assert SECRET not in text
    err = error_of(env={**env, "REGISTRY_MIRROR_ADMIN_LISTEN": "nope"})
    assert SECRET not in str(err)
    assert SECRET not in error_of(tracker=f"https://u:{SECRET}@tracker:5050").message
    assert SECRET not in render_reference() + render_example_config()


def test_blocklist_rules(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    config = write(
        tmp_path,
        f'[[blocklist]]\nrepository = "team/*"\ntag = "1.*"\nreason = "old"\n'
        f'[[blocklist]]\nupstream = "ghcr.io"\ndigest = "{digest}"\nreason = "CVE"\n'
        '[[blocklist]]\nhf_repo = "org/*"\nreason = "license"\n',
    )
    assert load_settings(config, {}, {}).blocklist == (
        BlockRule(repository="team/*", tag="1.*", reason="old"),
        BlockRule(upstream="ghcr.io", digest=digest, reason="CVE"),
        BlockRule(hf_repo="org/*", reason="license"),
    )
    assert load_settings(config, {}, {}) == load_settings(config, {}, {})
    assert load_blocklist(config) == load_settings(config, {}, {}).blocklist


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ('[[blocklist]]\nreason = "a"\n[[blocklist]]\nrepository = "x"', "blocklist[1].reason"),
        ('[[blocklist]]\nreason = "a"\n[[blocklist]]\nreason = "b"\n[[blocklist]]\ndigest = "sha256:abc"\nreason = "c"',
         "blocklist[2].digest"),
        ('[[blocklist]]\nreason = "a"\ndigest = "sha256:' + "A" * 64 + '"', "blocklist[0].digest"),
        ('[[blocklist]]\nreason = ""', "blocklist[0].reason"),
        ('[[blocklist]]\nreason = "a"\nrepository = ""', "blocklist[0].repository"),
        ('[[blocklist]]\nreason = "a"\nupstream = 5', "blocklist[0].upstream"),
        ('[[blocklist]]\nreason = "a"\ntag = 1', "blocklist[0].tag"),
        ('[[blocklist]]\nreason = "a"\nhf_repo = []', "blocklist[0].hf_repo"),
        ('[[blocklist]]\nreason = "a"\nrepo = "x"', "blocklist[0].repo"),
        ("blocklist = 1", "blocklist"),
    ],
)  # fmt: skip
def test_blocklist_errors_name_the_rule_and_key(tmp_path: Path, rules: str, field: str) -> None:
    assert error_of(write(tmp_path, rules + "\n")).field == field


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[[blocklist]]\nreason = "a"\ndigest = "md5:x"\n', "blocklist[0].digest"),
        ('[[blocklist]]\nreason = "a"\ndigest = "sha1:' + "a" * 40 + '"\n', "blocklist[0].digest"),
        ('[catalog]\nsources = ["ghcr.io/org/catalog@md5:x"]\n', "catalog.sources"),
    ],
)
def test_digests_outside_the_oci_grammar_are_refused_naming_the_field(tmp_path: Path, toml: str, field: str) -> None:
    error = error_of(write(tmp_path, toml))
    assert error.field == field and "unsupported digest algorithm" in str(error)


def test_signature_policies(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_bytes(COSIGN_PUB.read_bytes())
    config = write(
        tmp_path,
        '[[signatures]]\nupstream = "ghcr.io"\nrepositories = ["org/*"]\npublic_keys = ["k.pub"]\n'
        '[[signatures]]\nname = "hub"\nupstream = "docker.io"\nrepositories = ["library/*", "x/y"]\n'
        f'public_keys = ["k.pub", "{COSIGN_PUB}"]\nmode = "WARN"\n',
    )
    assert load_settings(config, {}, {}).signatures == (
        SignatureRule(upstream="ghcr.io", repositories=("org/*",), public_keys=(tmp_path / "k.pub",),
                      mode="enforce", name="signatures[0]"),
        SignatureRule(upstream="docker.io", repositories=("library/*", "x/y"),
                      public_keys=(tmp_path / "k.pub", COSIGN_PUB), mode="warn", name="hub"),
    )  # fmt: skip


_SIG = '[[signatures]]\nupstream = "ghcr.io"\nrepositories = ["o/*"]\npublic_keys = ["k.pub"]\n'


@pytest.mark.parametrize(
    ("rules", "field", "words"),
    [
        (_SIG + 'mode = "audit"', "signatures[0].mode", "enforce, warn"),
        (_SIG.replace('"ghcr.io"', '"nowhere.example"'), "signatures[0].upstream", "not a configured upstream"),
        (_SIG.replace('"ghcr.io"', '"not a host"'), "signatures[0].upstream", "registry host"),
        (_SIG.replace('["o/*"]', "[]"), "signatures[0].repositories", "must not be empty"),
        (_SIG.replace('["k.pub"]', "[]"), "signatures[0].public_keys", "must not be empty"),
        (_SIG.replace('"k.pub"', '"missing.pub"'), "signatures[0].public_keys", "no such file"),
        (_SIG.replace('"k.pub"', '"registry-mirror.toml"'), "signatures[0].public_keys", "not a PEM public key"),
        (_SIG + _SIG.replace("public_keys = [\"k.pub\"]\n", ""), "signatures[1].public_keys", "required"),
        (_SIG + 'name = "a"\n' + _SIG + 'name = "a"\n', "signatures[1].name", "names two policies"),
        (_SIG + 'repository = "x"', "signatures[0].repository", "did you mean 'repositories'"),
        ("signatures = 1", "signatures", "expected [[signatures]]"),
    ],
)  # fmt: skip
def test_signature_policy_errors_name_the_policy_and_key(tmp_path: Path, rules: str, field: str, words: str) -> None:
    (tmp_path / "k.pub").write_bytes(COSIGN_PUB.read_bytes())
    error = error_of(write(tmp_path, rules + "\n"))
    assert error.field == field and words in error.message, error


@pytest.mark.parametrize(("text", "section"), [("p2p = 1", "p2p"), ("[admin]\nlisen = 1", "admin.lisen"),
                                                ("[limits]\nrate = 1", "limits.rate")])  # fmt: skip
def test_unknown_section_keys_are_errors(tmp_path: Path, text: str, section: str) -> None:
    assert error_of(write(tmp_path, text + "\n")).field == section


@pytest.mark.parametrize(
    ("value", "stored"),
    [("EMBEDDED", "embedded"), (" ", ""), ("HTTPS://Tracker.Example:5050/", "https://tracker.example:5050")],
)
def test_tracker_values(value: str, stored: str) -> None:
    assert load_settings(None, {}, {"tracker": value}).p2p.tracker == stored


def test_listen_style_values_are_normalised() -> None:
    settings = load_settings(None, {}, {"peer_listen": "[0:0::1]:5002", "admin_listen": "LOCALHOST:5001"})
    assert settings.p2p.peer_listen == "[::1]:5002" and settings.admin.listen == "localhost:5001"
    assert load_settings(None, {}, {"otlp_endpoint": "http://c:4318/v1/traces/"}).telemetry.otlp_endpoint == (
        "http://c:4318/v1/traces"
    )


def test_via_flag_sets_a_configured_upstream_and_names_the_field_otherwise() -> None:
    settings = load_settings(
        None, {}, {"upstream": ["r.test=http://127.0.0.1:5101"], "via": ["r.test=http://regional:5000/"]}
    )
    assert settings.upstream("r.test").via == "http://regional:5000"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"upstreams\.nope\.via: not a configured upstream"):
        load_settings(None, {}, {"via": ["nope=http://regional:5000"]})
    with pytest.raises(ConfigError, match=r"upstreams\.r\.test\.via|upstreams\.\"r\.test\"\.via"):
        load_settings(None, {}, {"upstream": ["r.test=http://127.0.0.1:5101"], "via": ["r.test=ftp://x"]})


def test_serve_flags_cover_every_flagged_key() -> None:
    assert set(serve_flags()) == {key.cli for key in SETTING_KEYS if key.cli} | {"upstream", "via"}
    flags = {key.flag for key in SETTING_KEYS if key.cli}
    assert {"--tracker", "--peer-listen", "--advertise", "--zone", "--piece-size", "--tracker-token-file",
            "--peer-ca", "--peer-cert", "--peer-key", "--catalog", "--trusted-key",
            "--catalog-poll-interval", "--catalog-insecure", "--hf-upstream", "--modelscope-upstream",
            "--admin-listen", "--otlp-endpoint"} <= flags  # fmt: skip
    assert not any(flag.startswith("--fault") for flag in flags)  # fault injection lives in tests/support
    assert len({key.env for key in SETTING_KEYS}) == len(SETTING_KEYS)
