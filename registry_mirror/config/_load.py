"""Load `Settings` once: embedded defaults < TOML file < environment < command-line flags.

Every bad value raises `ConfigError` naming its dotted field and where it came from, on one line.
Secrets are read from the files or variables the configuration names and are never echoed.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from registry_mirror.config._fields import ENV_PREFIX, Key, all_keys, keys_of, required_keys, sections_of
from registry_mirror.config._settings import BlockRule, Settings, SignatureRule, UpstreamSettings, builtin_upstreams
from registry_mirror.config._values import (
    LOG_LEVELS,
    InvalidValue,
    TiB,
    bool_from_text,
    format_size,
    is_loopback_host,
    is_registry_name,
    parse_bool,
    parse_duration,
    parse_listen,
    parse_origin_url,
    parse_path_prefix,
    parse_registry_name,
    parse_size,
    parse_text,
    sized,
)

# Parsers are re-exported: hosts_toml, the CLI and tests import them from here.
__all__ = [
    "LOG_LEVELS", "TiB", "ConfigError", "InvalidValue", "Key", "SECTIONS", "SETTING_KEYS",
    "BLOCK_RULE_KEYS", "SIGNATURE_RULE_KEYS", "UPSTREAM_KEYS", "TOML_ONLY_KEYS", "bool_from_text", "format_size",
    "key_help", "load_blocklist", "load_settings", "parse_blocklist", "parse_duration", "parse_origin_url", "parse_path_prefix",
    "parse_registry_name", "parse_size", "serve_flags", "sized",
]  # fmt: skip

CONFIG_ENV = "REGISTRY_MIRROR_CONFIG"  # read by the CLI, not here
UPSTREAMS_ENV = "REGISTRY_MIRROR_UPSTREAMS"
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigError(ValueError):
    """A setting with a bad value; `str()` is one line: `<field>: <message>`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return " ".join(f"{self.field}: {self.message}".split("\n"))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- the keys, derived from the settings dataclasses (settings.py declares each once) ----

# Sub-tables in the order the reference and the example show them.
SECTIONS = tuple(name for name, _, _ in sections_of(Settings))
SETTING_KEYS: tuple[Key, ...] = all_keys(Settings)


def _table_keys(cls: type) -> dict[str, Callable[[object], object]]:
    return {key.path: key.parse for key in keys_of(cls)}


# Keys of one `[upstreams."NAME"]` table; password and token come only from *_file or *_env.
UPSTREAM_KEYS = _table_keys(UpstreamSettings)
# Its secrets (password, token): never inline, each read from <name>_file or <name>_env.
UPSTREAM_SECRETS = tuple(dict.fromkeys(key.secret for key in keys_of(UpstreamSettings) if key.secret))
# Keys of one `[[blocklist]]` rule (TOML only: the admin API changes rules at run time).
BLOCK_RULE_KEYS = _table_keys(BlockRule)
# Keys of one `[[signatures]]` policy (TOML only).
SIGNATURE_RULE_KEYS = _table_keys(SignatureRule)
TOML_ONLY_KEYS = {"builtin_upstreams": "Start from the built-in upstreams (false: only those configured)."}
UPSTREAM_FLAG = "--upstream"
VIA_FLAG = "--via"

_KEYS_BY_PATH = {key.path: key for key in SETTING_KEYS}
_KEYS_BY_ENV = {key.env: key for key in SETTING_KEYS}
_KEYS_BY_CLI = {key.cli: key for key in SETTING_KEYS if key.cli}
# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, <SERVICE>_PORT_5000_TCP... for a
# Service named registry-mirror; those must not make the pod crash on "unknown variable".
_K8S_SERVICE_ENV_RE = re.compile(r"^REGISTRY_MIRROR_(SERVICE_(HOST|PORT\w*)|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$")


def serve_flags() -> tuple[str, ...]:
    """Every key of load_settings' `cli` mapping: one per flagged setting, plus "upstream" and
    "via" (after "upstream": a --via applies to the upstream as --upstream left it)."""
    return (*_KEYS_BY_CLI, "upstream", "via")


def key_help(key: Key) -> str:
    """The one-line description of a key, from its dataclass field."""
    return key.help


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

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env  # where *_env secrets are read from
        self.values: dict[str, object] = {}
        self.sources: dict[str, str] = {}
        self.upstreams: dict[str, UpstreamSettings] = {u.name: u for u in builtin_upstreams()}
        self.blocklist: tuple[BlockRule, ...] = ()
        self.signatures: tuple[SignatureRule, ...] = ()
        self.signature_source = "defaults"

    def set(self, key: Key, raw: object, source: str, base: Path, *, text: bool) -> None:
        value = parse_value(key, raw, source, base, text=text)
        if key.secret is not None:
            # A later layer naming the secret's other source replaces it; one layer naming
            # both is an error (in _read_secret).
            for other in (k for k in SETTING_KEYS if k.secret == key.secret and k is not key):
                if self.sources.get(other.path, source) != source:
                    self.values.pop(other.path, None)
        for attr, part in key.spread(value).items():
            self.values[attr] = part
            self.sources[attr] = source

    def source(self, *attrs: str) -> str:
        return next((self.sources[a] for a in attrs if a in self.sources), "defaults")

    def override_upstream(self, spec: object, source: str) -> None:
        """NAME=URL from the environment or CLI: replaces that upstream, credentials too."""
        name, sep, url = spec.partition("=") if isinstance(spec, str) else ("", "", "")
        if not sep:
            raise ConfigError("upstreams", f"expected NAME=URL, got {_show(spec)} ({_from(source)})")
        try:
            name = parse_registry_name(name)
        except InvalidValue as exc:
            raise ConfigError("upstreams", f"{exc} ({_from(source)})") from None
        url = str(_parse_field(_upstream_field(name, "url"), parse_origin_url, url, source))
        previous = self.upstreams.get(name)
        library_prefix = previous.library_prefix if previous else name == "docker.io"
        self.upstreams[name] = UpstreamSettings(name=name, url=url, library_prefix=library_prefix)

    def set_via(self, spec: object, source: str) -> None:
        """NAME=URL from the CLI: fetch that configured upstream through another mirror."""
        name, sep, url = spec.partition("=") if isinstance(spec, str) else ("", "", "")
        if not sep:
            raise ConfigError("upstreams", f"expected NAME=URL, got {_show(spec)} ({_from(source)})")
        previous = self.upstreams.get(name.strip())
        if previous is None:
            names = ", ".join(self.upstreams) or "none"
            raise ConfigError(
                _upstream_field(name.strip(), "via"),
                f"not a configured upstream (configured: {names}) ({_from(source)})",
            )
        via = _parse_field(_upstream_field(previous.name, "via"), parse_origin_url, url, source)
        self.upstreams[previous.name] = replace(previous, via=str(via))

    def build(self) -> Settings:
        plain = {k: v for k, v in self.values.items() if not _KEYS_BY_PATH.get(k, _NO_KEY).secret}
        for key in (k for k in SETTING_KEYS if k.secret and k.path.endswith("_file")):
            secret = self._secret(key.secret)  # type: ignore[arg-type]
            if secret is not None:
                plain[key.secret] = secret  # type: ignore[index]
        defaults = Settings()
        sections = {
            section: replace(
                getattr(defaults, section),
                **{k.partition(".")[2]: v for k, v in plain.items() if k.startswith(section + ".")},
            )
            for section in SECTIONS
        }
        top = {k: v for k, v in plain.items() if "." not in k}
        settings = Settings(
            **top,  # type: ignore[arg-type]
            **sections,
            upstreams=tuple(self.upstreams.values()),
            blocklist=self.blocklist,
            signatures=self.signatures,
        )
        self._check(settings)
        return settings

    def _secret(self, path: str) -> str | None:
        prefix, _, name = path.rpartition(".")

        def field_of(suffix: str) -> str:
            return (f"{prefix}." if prefix else "") + f"{name}_{suffix}"

        file_path, env_path = field_of("file"), field_of("env")
        return _read_secret(
            name,
            self.values.get(file_path),
            self.values.get(env_path),
            self.env,
            field_of,
            self.source(file_path, env_path),
        )

    def _check(self, settings: Settings) -> None:
        low, high = settings.cache.low_watermark, settings.cache.high_watermark
        if not low < high:
            source = self.source("cache.low_watermark", "cache.high_watermark")
            raise ConfigError(
                "cache.low_watermark",
                f"must be below cache.high_watermark ({low} >= {high}) ({_from(source)})",
            )
        if settings.upstream(settings.default_upstream) is None:
            names = ", ".join(u.name for u in settings.upstreams) or "none"
            raise ConfigError(
                "default_upstream",
                f"{settings.default_upstream!r} is not a configured upstream"
                f" (configured: {names}) ({_from(self.source('default_upstream'))})",
            )
        self._check_peer_tls(settings)
        self._check_catalog(settings)
        self._check_signatures(settings)
        admin = settings.admin
        if admin.listen and admin.token is None:
            host = parse_listen(admin.listen)[0]
            if not is_loopback_host(host):
                raise ConfigError(
                    "admin.token",
                    f"required when admin.listen ({admin.listen}) is not a loopback address;"
                    f" set admin.token_file or admin.token_env ({_from(self.source('admin.listen'))})",
                )

    def _check_peer_tls(self, settings: Settings) -> None:
        names = ("peer_ca", "peer_cert", "peer_key")
        files = {name: getattr(settings.p2p, name) for name in names}
        given = [name for name in names if files[name] is not None]
        for name in given:
            _check_file(f"p2p.{name}", files[name], self.source(f"p2p.{name}"))
        if given and len(given) < len(names):
            missing = next(name for name in names if files[name] is None)
            raise ConfigError(
                f"p2p.{missing}",
                "set p2p.peer_ca, p2p.peer_cert and p2p.peer_key together, or none"
                f" ({_from(self.source(*(f'p2p.{n}' for n in given)))})",
            )

    def _check_catalog(self, settings: Settings) -> None:
        catalog = settings.catalog
        if catalog.sources and not catalog.trusted_keys:
            raise ConfigError(
                "catalog.trusted_keys",
                "required with catalog.sources: catalogs are only followed when signed"
                f" ({_from(self.source('catalog.sources'))})",
            )
        for path in catalog.trusted_keys:
            _check_file("catalog.trusted_keys", path, self.source("catalog.trusted_keys"))
        if catalog.state_dir is not None and catalog.state_dir.exists():
            if not catalog.state_dir.is_dir():
                raise ConfigError(
                    "catalog.state_dir",
                    f"{str(catalog.state_dir)!r} is not a directory ({_from(self.source('catalog.state_dir'))})",
                )

    def _check_signatures(self, settings: Settings) -> None:
        from registry_mirror.signatures import InvalidKey, load_public_key  # the verifier's own parser

        names: set[str] = set()
        for index, rule in enumerate(settings.signatures):
            field = f"signatures[{index}]"
            source = self.signature_source
            if settings.upstream(rule.upstream) is None:
                configured = ", ".join(u.name for u in settings.upstreams) or "none"
                raise ConfigError(
                    f"{field}.upstream",
                    f"{rule.upstream!r} is not a configured upstream (configured: {configured}) ({_from(source)})",
                )
            if rule.name in names:
                raise ConfigError(f"{field}.name", f"{rule.name!r} names two policies ({_from(source)})")
            names.add(rule.name)
            for path in rule.public_keys:
                _check_file(f"{field}.public_keys", path, source)
                try:
                    load_public_key(path.read_bytes())
                except (InvalidKey, OSError) as exc:
                    raise ConfigError(f"{field}.public_keys", f"{str(path)!r}: {exc} ({_from(source)})") from None


_NO_KEY = Key("", parse_text, "text", "")


def parse_value(key: Key, raw: object, source: str, base: Path, *, text: bool) -> object:
    """`raw` parsed for `key`; `text` (environment, flags) also reads booleans and comma lists.
    Relative paths are made relative to `base`; errors name the key and `source`."""
    if text and isinstance(raw, str) and key.kind == "bool":
        raw = bool_from_text(raw)
    if text and isinstance(raw, str) and key.repeatable:
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    value = _parse_field(key.path, key.parse, raw, source)
    if isinstance(value, Path):
        return base / value
    if key.kind == "paths":
        return tuple(base / path for path in value)  # type: ignore[attr-defined]
    return value


def cli_value(key: Key, raw: object, flag: str, base: Path) -> object:
    """A flag's value parsed for `key`, as load_settings parses it."""
    return parse_value(key, raw, flag, base, text=True)


def _check_file(field: str, path: object, source: str) -> None:
    if not Path(str(path)).is_file():
        raise ConfigError(field, f"no such file {str(path)!r} ({_from(source)})")


def _from(source: str) -> str:
    return "from defaults" if source == "defaults" else f"from {source}"


def _parse_field(field: str, parse: Callable[[object], object], raw: object, source: str) -> object:
    try:
        return parse(raw)
    except InvalidValue as exc:
        raise ConfigError(field, f"{exc} ({_from(source)})") from None


def load_settings(config_file: Path | None, env: Mapping[str, str], cli: Mapping[str, object]) -> Settings:
    """Settings from defaults, then `config_file`, then `REGISTRY_MIRROR_*` in `env`, then `cli`.

    `cli` holds the values of the flags given (None or absent: not given), keyed by Key.cli
    (see `serve_flags()`): text, a bool for on/off flags, a list for repeatable flags, plus
    "upstream": a list of NAME=URL. Secrets named by *_env are read from `env`.
    """
    builder = _Builder(env)
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
        if name in (*SECTIONS, "upstreams"):
            if not isinstance(value, dict):
                raise ConfigError(name, f"expected a table [{name}] ({_from(source)})")
            if name != "upstreams":
                for sub, sub_value in value.items():
                    _set_toml_key(builder, f"{name}.{sub}", sub_value, source, base)
        elif name == "blocklist":
            builder.blocklist = parse_blocklist(value, source)
        elif name == "signatures":
            builder.signatures = parse_signatures(value, source, base)
            builder.signature_source = source
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
        known = [k.path for k in SETTING_KEYS] + [*SECTIONS, "upstreams", "blocklist", "signatures"]
        known += list(TOML_ONLY_KEYS)
        raise ConfigError(path, f"unknown setting{_suggest(path, known)} ({_from(source)})")
    builder.set(key, value, source, base, text=False)


def load_blocklist(config_file: Path) -> tuple[BlockRule, ...]:
    """The `[[blocklist]]` rules of a config file, validated as at start (to re-read on change)."""
    return parse_blocklist(_read_toml(config_file).get("blocklist", []), str(config_file))


def parse_blocklist(value: object, source: str) -> tuple[BlockRule, ...]:
    """Rules from the TOML value of `blocklist`; `source` is named in errors."""
    tables = _parse_tables("blocklist", value, BLOCK_RULE_KEYS, required_keys(BlockRule), source)
    return tuple(BlockRule(**parsed) for parsed in tables)  # type: ignore[arg-type]


def parse_signatures(value: object, source: str, base: Path) -> tuple[SignatureRule, ...]:
    """Policies from the TOML value of `signatures`; key paths are relative to the file."""
    required = required_keys(SignatureRule)
    rules = []
    for index, parsed in enumerate(_parse_tables("signatures", value, SIGNATURE_RULE_KEYS, required, source)):
        for key in required:
            if not parsed[key]:
                raise ConfigError(f"signatures[{index}].{key}", f"must not be empty ({_from(source)})")
        parsed["public_keys"] = tuple(base / path for path in parsed["public_keys"])  # type: ignore[attr-defined]
        parsed.setdefault("name", f"signatures[{index}]")
        rules.append(SignatureRule(**parsed))  # type: ignore[arg-type]
    return tuple(rules)


def _parse_tables(
    name: str, value: object, keys: Mapping[str, Callable[[object], object]], required: Sequence[str], source: str
) -> list[dict[str, object]]:
    """Each `[[name]]` table's keys parsed; errors name the table by position (`name[2].key`)."""
    if not isinstance(value, list) or not all(isinstance(table, dict) for table in value):
        raise ConfigError(name, f"expected [[{name}]] tables ({_from(source)})")
    tables = []
    for index, table in enumerate(value):
        parsed: dict[str, object] = {}
        for key, raw in table.items():
            field = f"{name}[{index}].{key}"
            parse = keys.get(key)
            if parse is None:
                raise ConfigError(field, f"unknown setting{_suggest(key, keys)} ({_from(source)})")
            parsed[key] = _parse_field(field, parse, raw, source)
        for key in required:
            if key not in parsed:
                raise ConfigError(f"{name}[{index}].{key}", f"required ({_from(source)})")
        tables.append(parsed)
    return tables


def _apply_upstream_table(
    builder: _Builder, name: str, table: object, source: str, base: Path, env: Mapping[str, str]
) -> None:
    field = _upstream_field(name)
    if not is_registry_name(name):
        raise ConfigError(field, f"expected a registry host like docker.io as the table name ({_from(source)})")
    if not isinstance(table, dict):
        raise ConfigError(field, f"expected a table [{field}] ({_from(source)})")
    parsed: dict[str, object] = {}
    for key, raw in table.items():
        if key in UPSTREAM_SECRETS:
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
        kind: _read_secret(
            kind,
            parsed.get(f"{kind}_file"),
            parsed.get(f"{kind}_env"),
            env,
            lambda suffix, kind=kind: _upstream_field(name, f"{kind}_{suffix}"),  # type: ignore[misc]
            source,
        )
        for kind in UPSTREAM_SECRETS
    }
    if parsed.get("ca_bundle") is not None:
        _check_file(_upstream_field(name, "ca_bundle"), parsed["ca_bundle"], source)
    fields = {k: v for k, v in parsed.items() if k in UpstreamSettings.__dataclass_fields__}
    if "ca_bundle" in fields:
        fields["ca_bundle"] = str(fields["ca_bundle"])
    fields.update({k: v for k, v in secrets.items() if v is not None})
    base_upstream = previous or UpstreamSettings(name=name, url=str(parsed["url"]), library_prefix=name == "docker.io")
    upstream = replace(base_upstream, **fields)  # type: ignore[arg-type]  # each value parsed for its field
    _check_credentials(upstream, source)
    builder.upstreams[name] = upstream


def _read_secret(
    kind: str,
    file: object,
    variable: object,
    env: Mapping[str, str],
    field_of: Callable[[str], str],
    source: str,
) -> str | None:
    """The secret from `file` or the variable named `variable`; field_of("file") names fields."""
    if file is not None and variable is not None:
        raise ConfigError(field_of("file"), f"set {kind}_file or {kind}_env, not both ({_from(source)})")
    if file is not None:
        try:
            secret = Path(str(file)).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(field_of("file"), f"cannot read {str(file)!r}: {reason} ({_from(source)})") from None
        where = "file"
    elif variable is not None:
        secret = env.get(str(variable), "")
        where = "env"
    else:
        return None
    if not secret:
        raise ConfigError(field_of(where), f"{kind} is empty or unset ({_from(source)})")
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
        if name == "via":
            for spec in [value] if isinstance(value, str) else list(value):  # type: ignore[call-overload]
                builder.set_via(spec, VIA_FLAG)
            continue
        key = _KEYS_BY_CLI.get(name)
        if key is None:
            raise ConfigError(name, "unknown command-line setting")
        builder.set(key, value, key.flag or name, cwd, text=True)
