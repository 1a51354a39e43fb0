"""Load `Settings` once: embedded defaults < TOML file < environment < command-line flags.

Every bad value raises `ConfigError` naming its dotted field and where it came from, on one line.
Secrets are read from the files or variables the configuration names and are never echoed.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from registry_mirror.settings import (
    CacheSettings,
    GiB,
    KiB,
    MiB,
    Settings,
    UpstreamSettings,
    builtin_upstreams,
)

ENV_PREFIX = "REGISTRY_MIRROR_"
CONFIG_ENV = "REGISTRY_MIRROR_CONFIG"  # read by the CLI, not here
UPSTREAMS_ENV = "REGISTRY_MIRROR_UPSTREAMS"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
TiB = 1024 * GiB


class ConfigError(ValueError):
    """A setting with a bad value; `str()` is one line: `<field>: <message>`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return " ".join(f"{self.field}: {self.message}".split("\n"))


class InvalidValue(ValueError):
    """Raised by the value parsers; the loader adds the field name and the source."""


# ---- value parsers: each takes a TOML value or a text value from the environment / CLI ----

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}  # fmt: skip
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_REGISTRY_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$")
_PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_size(value: object) -> int:
    """Bytes from 50GiB, 500MB, 1TB or a plain integer (binary units: KiB..TiB, decimal: kB..TB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidValue(f"must not be negative, got {value}")
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    unit = _SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise InvalidValue(f"expected a size like 50GiB, got {_show(value)}")
    return int(Decimal(match.group(1)) * unit)


def format_size(size: int) -> str:
    for name, unit in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size and size % unit == 0:
            return f"{size // unit}{name}"
    return str(size)


def sized(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        size = parse_size(value)
        if size < minimum or (maximum is not None and size > maximum):
            upper = f" and at most {format_size(maximum)}" if maximum is not None else ""
            raise InvalidValue(
                f"must be at least {format_size(minimum)}{upper}, got {_show(value)}"
            )
        return size

    return parse


def parse_duration(value: object) -> float:
    """Seconds from a number or text like 30s, 250ms, 5m, 1h, 1d."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidValue(
                f"expected seconds or a duration like 30s, 5m, 1h, got {_show(value)}"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValue(f"must be a finite number of seconds >= 0, got {_show(value)}")
    return seconds


def parse_timeout(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise InvalidValue(f"must be more than 0 seconds, got {_show(value)}")
    return seconds


def parse_fraction(value: object) -> float:
    try:
        number = (
            float(value)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool)
            else None
        )
    except ValueError:
        number = None
    if number is None or not 0 < number <= 1:
        raise InvalidValue(f"expected a fraction in (0, 1] like 0.9, got {_show(value)}")
    return number


def parse_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"expected true or false, got {_show(value)}")
    return value


def bool_from_text(text: str) -> bool | str:
    """Environment and CLI spellings of a boolean; anything else is left to parse_bool."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return text


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"expected a non-empty string, got {_show(value)}")
    return value.strip()


def _check_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        raise InvalidValue(f"{_show(host)} is not a host name or IP address")
    return host.lower()


def parse_listen(value: object) -> tuple[str, int]:
    """(host, port) from HOST:PORT or [IPv6]:PORT; port 0 asks the kernel for a free one."""
    text = value.strip() if isinstance(value, str) else ""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$", text)
    if match is None or int(match.group(3)) > 65535:
        raise InvalidValue(f"expected HOST:PORT like 127.0.0.1:5000, got {_show(value)}")
    host = match.group(1) or match.group(2)
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidValue(f"{_show(host)} is not an IPv6 address") from None
        return host, int(match.group(3))
    return _check_host(host), int(match.group(3))


def parse_origin_url(value: object) -> str:
    """scheme://host[:port] with scheme http or https and no path, query or credentials."""
    text = parse_text(value)
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it carries a secret.
        raise InvalidValue(
            "credentials in the URL are not accepted; use username and password_file"
        )
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValue(
            f"expected an http(s) URL like https://registry-1.docker.io, got {_show(text)}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidValue(f"must be scheme://host[:port] with no path or query, got {_show(text)}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue(f"bad port in {_show(text)}") from None
    host = parts.hostname
    host = f"[{host}]" if ":" in host else _check_host(host)
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def parse_registry_name(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not _REGISTRY_RE.match(text) or (":" in text and int(text.rsplit(":", 1)[1]) > 65535):
        raise InvalidValue(
            f"expected a registry host like docker.io or 127.0.0.1:5101, got {_show(value)}"
        )
    return text


def parse_path_prefix(value: object) -> str:
    """'' or '/a/b': leading slash added, trailing slash dropped."""
    if not isinstance(value, str):
        raise InvalidValue(f"expected a URL path like /mirror, got {_show(value)}")
    segments = value.strip().strip("/").split("/") if value.strip().strip("/") else []
    for segment in segments:
        if not _PREFIX_SEGMENT_RE.match(segment) or segment in (".", ".."):
            raise InvalidValue(f"expected a URL path like /mirror, got {_show(value)}")
    return "/" + "/".join(segments) if segments else ""


def parse_log_level(value: object) -> str:
    level = value.strip().lower() if isinstance(value, str) else ""
    if level not in LOG_LEVELS:
        raise InvalidValue(f"expected one of {', '.join(LOG_LEVELS)}, got {_show(value)}")
    return level


def parse_path(value: object) -> Path:
    return Path(parse_text(value)).expanduser()


def parse_globs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(g, str) and g.strip() for g in value):
        raise InvalidValue(
            f'expected a list of repository globs like ["library/*"], got {_show(value)}'
        )
    return tuple(g.strip() for g in value)


def parse_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
        raise InvalidValue(f"expected an environment variable name, got {_show(value)}")
    return value


# ---- the table of settings: one row per TOML key ----


@dataclass(frozen=True)
class Key:
    path: str  # dotted TOML path; also the Settings attribute it sets (cache.max_size)
    parse: Callable[[object], object]
    kind: str  # how the reference renders it: text, size, duration, fraction, bool, path, listen
    cli: str | None = None  # key in load_settings' `cli` mapping; the flag is --<cli with dashes>
    env_name: str | None = None  # when not REGISTRY_MIRROR_<PATH>
    attrs_set: tuple[str, ...] = ()  # when not just `path` (listen sets host and port)

    @property
    def env(self) -> str:
        return self.env_name or ENV_PREFIX + self.path.replace(".", "_").upper()

    @property
    def attrs(self) -> tuple[str, ...]:
        return self.attrs_set or (self.path,)

    @property
    def flag(self) -> str | None:
        return "--" + self.cli.replace("_", "-") if self.cli else None


SETTING_KEYS: tuple[Key, ...] = (
    Key("listen", parse_listen, "listen", "listen", attrs_set=("listen_host", "listen_port")),
    Key("path_prefix", parse_path_prefix, "text", "path_prefix"),
    Key("default_upstream", parse_registry_name, "text", "default_upstream"),
    Key("tag_ttl", parse_duration, "duration"),
    Key("max_stale", parse_duration, "duration"),
    Key("negative_ttl", parse_duration, "duration"),
    Key("manifest_max_bytes", sized(1 * KiB), "size"),
    Key("log_level", parse_log_level, "text", "log_level"),
    Key("access_log", parse_bool, "bool"),
    Key("cache.directory", parse_path, "path", "cache_dir", env_name=ENV_PREFIX + "CACHE_DIR"),
    Key("cache.max_size", sized(1 * MiB), "size", "cache_max_size"),
    Key("cache.high_watermark", parse_fraction, "fraction"),
    Key("cache.low_watermark", parse_fraction, "fraction"),
    Key("cache.min_free_bytes", sized(0), "size"),
    Key("cache.complete_abandoned_fills", parse_bool, "bool"),
    Key("cache.chunk_size", sized(4 * KiB, 64 * MiB), "size"),
)

# Keys of one `[upstreams."NAME"]` table; password and token come only from *_file or *_env.
UPSTREAM_KEYS: dict[str, Callable[[object], object]] = {
    "url": parse_origin_url,
    "username": parse_text,
    "password_file": parse_path,
    "password_env": parse_env_name,
    "token_file": parse_path,
    "token_env": parse_env_name,
    "ca_bundle": parse_path,
    "insecure": parse_bool,
    "connect_timeout": parse_timeout,
    "read_timeout": parse_timeout,
    "allow_repositories": parse_globs,
    "library_prefix": parse_bool,
}
TOML_ONLY_KEYS = {
    "builtin_upstreams": "Start from the built-in upstreams (false: only those configured)."
}
UPSTREAM_FLAG = "--upstream"

_KEYS_BY_PATH = {key.path: key for key in SETTING_KEYS}
_KEYS_BY_ENV = {key.env: key for key in SETTING_KEYS}
_KEYS_BY_CLI = {key.cli: key for key in SETTING_KEYS if key.cli}
# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, <SERVICE>_PORT_5000_TCP... for a
# Service named registry-mirror; those must not make the pod crash on "unknown variable".
_K8S_SERVICE_ENV_RE = re.compile(
    r"^REGISTRY_MIRROR_(SERVICE_(HOST|PORT\w*)|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$"
)


def _quoted(name: str) -> str:
    return name if _BARE_KEY_RE.match(name) else '"' + name.replace('"', '\\"') + '"'


def _upstream_field(name: str, key: str | None = None) -> str:
    return f"upstreams.{_quoted(name)}" + (f".{key}" if key else "")


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---- the loader ----


class _Builder:
    """Collects parsed values layer by layer, remembering the source of each for error messages."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.sources: dict[str, str] = {}
        self.upstreams: dict[str, UpstreamSettings] = {u.name: u for u in builtin_upstreams()}

    def set(self, key: Key, raw: object, source: str, base: Path, *, text: bool) -> None:
        if text and isinstance(raw, str) and key.parse is parse_bool:
            raw = bool_from_text(raw)
        try:
            value = key.parse(raw)
        except InvalidValue as exc:
            raise ConfigError(key.path, f"{exc} ({_from(source)})") from None
        if isinstance(value, Path):
            value = base / value
        parts = value if len(key.attrs) > 1 else (value,)
        for attr, part in zip(key.attrs, parts, strict=True):
            self.values[attr] = part
            self.sources[attr] = source

    def override_upstream(self, spec: object, source: str) -> None:
        """NAME=URL from the environment or CLI: replaces that upstream, credentials too."""
        name, sep, url = spec.partition("=") if isinstance(spec, str) else ("", "", "")
        if not sep:
            raise ConfigError(
                "upstreams", f"expected NAME=URL, got {_show(spec)} ({_from(source)})"
            )
        try:
            name = parse_registry_name(name)
        except InvalidValue as exc:
            raise ConfigError("upstreams", f"{exc} ({_from(source)})") from None
        url = _parse_field(_upstream_field(name, "url"), parse_origin_url, url, source)
        previous = self.upstreams.get(name)
        library_prefix = previous.library_prefix if previous else name == "docker.io"
        self.upstreams[name] = UpstreamSettings(name=name, url=url, library_prefix=library_prefix)

    def build(self) -> Settings:
        top = {k: v for k, v in self.values.items() if "." not in k}
        cache = {k.split(".", 1)[1]: v for k, v in self.values.items() if k.startswith("cache.")}
        settings = Settings(
            **top, cache=CacheSettings(**cache), upstreams=tuple(self.upstreams.values())
        )
        self._check(settings)
        return settings

    def _check(self, settings: Settings) -> None:
        low, high = settings.cache.low_watermark, settings.cache.high_watermark
        if not low < high:
            source = self.sources.get("cache.low_watermark") or self.sources.get(
                "cache.high_watermark", "defaults"
            )
            raise ConfigError(
                "cache.low_watermark",
                f"must be below cache.high_watermark ({low} >= {high}) ({_from(source)})",
            )
        if settings.upstream(settings.default_upstream) is None:
            names = ", ".join(u.name for u in settings.upstreams) or "none"
            source = self.sources.get("default_upstream", "defaults")
            raise ConfigError(
                "default_upstream",
                f"{settings.default_upstream!r} is not a configured upstream"
                f" (configured: {names}) ({_from(source)})",
            )


def _from(source: str) -> str:
    return "from defaults" if source == "defaults" else f"from {source}"


def _parse_field(field: str, parse: Callable[[object], object], raw: object, source: str) -> object:
    try:
        return parse(raw)
    except InvalidValue as exc:
        raise ConfigError(field, f"{exc} ({_from(source)})") from None


def load_settings(
    config_file: Path | None, env: Mapping[str, str], cli: Mapping[str, object]
) -> Settings:
    """Settings from defaults, then `config_file`, then `REGISTRY_MIRROR_*` in `env`, then `cli`.

    `cli` holds the values of the flags given (None or absent: not given), keyed by Key.cli, plus
    "upstream": a list of NAME=URL.
    """
    builder = _Builder()
    if config_file is not None:
        _apply_toml(builder, config_file, env)
    _apply_env(builder, env)
    _apply_cli(builder, cli)
    return builder.build()


def _read_toml(config_file: Path) -> dict[str, object]:
    try:
        with open(config_file, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {str(config_file)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{str(config_file)!r} is not valid TOML: {exc}") from None


def _apply_toml(builder: _Builder, config_file: Path, env: Mapping[str, str]) -> None:
    document = _read_toml(config_file)
    source = str(config_file)
    base = config_file.absolute().parent  # relative paths in the file are relative to it
    for name, value in document.items():
        if name in ("cache", "upstreams"):
            if not isinstance(value, dict):
                raise ConfigError(name, f"expected a table [{name}] ({_from(source)})")
            if name == "cache":
                for sub, sub_value in value.items():
                    _set_toml_key(builder, f"cache.{sub}", sub_value, source, base)
        elif name == "builtin_upstreams":
            if not _parse_field(name, parse_bool, value, source):
                builder.upstreams.clear()
        else:
            _set_toml_key(builder, name, value, source, base)
    for name, table in dict(document.get("upstreams", {})).items():  # type: ignore[call-overload]
        _apply_upstream_table(builder, name, table, source, base, env)


def _set_toml_key(builder: _Builder, path: str, value: object, source: str, base: Path) -> None:
    key = _KEYS_BY_PATH.get(path)
    if key is None:
        known = [k.path for k in SETTING_KEYS] + ["cache", "upstreams", *TOML_ONLY_KEYS]
        raise ConfigError(path, f"unknown setting{_suggest(path, known)} ({_from(source)})")
    builder.set(key, value, source, base, text=False)


def _apply_upstream_table(
    builder: _Builder, name: str, table: object, source: str, base: Path, env: Mapping[str, str]
) -> None:
    field = _upstream_field(name)
    if not _REGISTRY_RE.match(name):
        raise ConfigError(
            field, f"expected a registry host like docker.io as the table name ({_from(source)})"
        )
    if not isinstance(table, dict):
        raise ConfigError(field, f"expected a table [{field}] ({_from(source)})")
    parsed: dict[str, object] = {}
    for key, raw in table.items():
        if key in ("password", "token"):
            message = f"inline secrets are not accepted; use {key}_file or {key}_env"
            raise ConfigError(_upstream_field(name, key), f"{message} ({_from(source)})")
        parse = UPSTREAM_KEYS.get(key)
        if parse is None:
            message = f"unknown setting{_suggest(key, UPSTREAM_KEYS)}"
            raise ConfigError(_upstream_field(name, key), f"{message} ({_from(source)})")
        value = _parse_field(_upstream_field(name, key), parse, raw, source)
        parsed[key] = base / value if isinstance(value, Path) else value
    previous = builder.upstreams.get(name)
    if previous is None and "url" not in parsed:
        raise ConfigError(
            _upstream_field(name, "url"),
            f"required for an upstream that is not built in ({_from(source)})",
        )
    secrets = {
        kind: _read_secret(name, kind, parsed, env, source) for kind in ("password", "token")
    }
    if parsed.get("ca_bundle") is not None and not Path(str(parsed["ca_bundle"])).is_file():
        raise ConfigError(
            _upstream_field(name, "ca_bundle"),
            f"no such file {str(parsed['ca_bundle'])!r} ({_from(source)})",
        )
    fields = {k: v for k, v in parsed.items() if k in UpstreamSettings.__dataclass_fields__}
    if "ca_bundle" in fields:
        fields["ca_bundle"] = str(fields["ca_bundle"])
    fields.update({k: v for k, v in secrets.items() if v is not None})
    base_upstream = previous or UpstreamSettings(
        name=name, url=str(parsed["url"]), library_prefix=name == "docker.io"
    )
    upstream = replace(base_upstream, **fields)
    _check_credentials(upstream, source)
    builder.upstreams[name] = upstream


def _read_secret(
    name: str, kind: str, parsed: Mapping[str, object], env: Mapping[str, str], source: str
) -> str | None:
    file, variable = parsed.get(f"{kind}_file"), parsed.get(f"{kind}_env")
    if file is not None and variable is not None:
        raise ConfigError(
            _upstream_field(name, f"{kind}_file"),
            f"set {kind}_file or {kind}_env, not both ({_from(source)})",
        )
    if file is not None:
        try:
            secret = Path(str(file)).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                _upstream_field(name, f"{kind}_file"),
                f"cannot read {str(file)!r}: {reason} ({_from(source)})",
            ) from None
        where = f"{kind}_file"
    elif variable is not None:
        secret = env.get(str(variable), "")
        where = f"{kind}_env"
    else:
        return None
    if not secret:
        raise ConfigError(
            _upstream_field(name, where), f"{kind} is empty or unset ({_from(source)})"
        )
    return secret


def _check_credentials(upstream: UpstreamSettings, source: str) -> None:
    if upstream.password is not None and upstream.username is None:
        raise ConfigError(
            _upstream_field(upstream.name, "username"),
            f"required with a password ({_from(source)})",
        )
    if upstream.password is not None and upstream.token is not None:
        raise ConfigError(
            _upstream_field(upstream.name, "token_file"),
            f"use a password or a token, not both ({_from(source)})",
        )


def _apply_env(builder: _Builder, env: Mapping[str, str]) -> None:
    cwd = Path.cwd()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or _K8S_SERVICE_ENV_RE.match(name):
            continue
        if name == UPSTREAMS_ENV:
            for spec in filter(None, (part.strip() for part in value.split(","))):
                builder.override_upstream(spec, name)
            continue
        key = _KEYS_BY_ENV.get(name)
        if key is None:
            known = [*_KEYS_BY_ENV, UPSTREAMS_ENV, CONFIG_ENV]
            raise ConfigError(name, f"unknown environment variable{_suggest(name, known)}")
        builder.set(key, value, name, cwd, text=True)


def _apply_cli(builder: _Builder, cli: Mapping[str, object]) -> None:
    cwd = Path.cwd()
    for name, value in cli.items():
        if value is None:
            continue
        if name == "upstream":
            specs = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
            for spec in specs:
                builder.override_upstream(spec, UPSTREAM_FLAG)
            continue
        key = _KEYS_BY_CLI.get(name)
        if key is None:
            raise ConfigError(name, "unknown command-line setting")
        builder.set(key, value, key.flag or name, cwd, text=True)
