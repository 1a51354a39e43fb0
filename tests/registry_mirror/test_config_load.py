from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from registry_mirror.config_load import (
    SETTING_KEYS,
    ConfigError,
    load_settings,
    parse_origin_url,
    parse_path_prefix,
    parse_size,
)
from registry_mirror.config_reference import render_example_config, render_reference
from registry_mirror.settings import GiB, KiB, MiB, Settings, UpstreamSettings, builtin_upstreams

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Value-Never-Shown"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry-mirror.toml"
    path.write_text(text)
    return path


def error_of(
    config: Path | None = None, env: dict[str, str] | None = None, **cli: object
) -> ConfigError:
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
def test_cli_beats_env_beats_toml_beats_defaults(
    tmp_path, path, env_name, cli_name, values, read
) -> None:
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
    settings = load_settings(
        config, {}, {"upstream": ["docker.io=http://127.0.0.1:9", "extra.io=https://e.io"]}
    )
    assert settings.upstream("docker.io") == UpstreamSettings(
        "docker.io", "http://127.0.0.1:9", library_prefix=True
    )
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
    assert (
        error_of(write(tmp_path, '[upstreams."new.io"]\nusername = "u"\n')).field
        == 'upstreams."new.io".url'
    )
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
    "manifest_max_bytes": "lots",
    "log_level": "loud",
    "access_log": "maybe",
    "cache.directory": "",
    "cache.max_size": "lots",
    "cache.high_watermark": "1.5",
    "cache.low_watermark": "0",
    "cache.min_free_bytes": "-5",
    "cache.complete_abandoned_fills": "perhaps",
    "cache.chunk_size": "1B",
}


def test_bad_values_cover_every_key() -> None:
    assert set(BAD_VALUES) == {key.path for key in SETTING_KEYS}


@pytest.mark.parametrize("key", SETTING_KEYS, ids=lambda key: key.path)
def test_every_key_error_names_its_field(tmp_path: Path, key) -> None:
    section, _, name = key.path.rpartition(".")
    config = write(
        tmp_path, (f"[{section}]\n" if section else "") + f'{name} = "{BAD_VALUES[key.path]}"\n'
    )
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
    assert "did you mean 'cache.max_size'" in str(
        error_of(write(tmp_path, "[cache]\nmax_sise = 1\n"))
    )


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    assert error_of(tmp_path / "absent.toml").field == "config"


def test_watermarks_must_be_ordered(tmp_path: Path) -> None:
    config = write(tmp_path, "[cache]\nlow_watermark = 0.9\nhigh_watermark = 0.9\n")
    assert error_of(config).field == "cache.low_watermark"
    ok = load_settings(
        write(tmp_path, "[cache]\nlow_watermark = 0.5\nhigh_watermark = 1\n"), {}, {}
    )
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
    with pytest.raises(ValueError, match="size like 50GiB|negative"):
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
    assert load_settings(REPO / "config" / "registry-mirror.toml", {}, {}) == load_settings(
        None, {}, {}
    )


def test_example_config_uncommented_is_valid_and_says_the_defaults(tmp_path: Path) -> None:
    text = (REPO / "config" / "registry-mirror.toml").read_text()
    uncommented = re.sub(r"(?m)^# (?=\[|[a-z_]+ = )", "", text)
    assert uncommented.count("\n[") == 2  # [cache] and the example upstream table
    settings = load_settings(
        write(tmp_path, uncommented), {"EXAMPLE_REGISTRY_PASSWORD": SECRET}, {}
    )
    example = UpstreamSettings(
        name="registry.example.internal",
        url="https://registry.example.internal",
        username="puller",
        password=SECRET,
    )
    defaults = load_settings(None, {}, {})
    assert settings == replace(defaults, upstreams=(*defaults.upstreams, example))
    for key in SETTING_KEYS:
        assert re.search(rf"(?m)^{re.escape(key.path.rpartition('.')[2])} = ", uncommented), (
            key.path
        )
