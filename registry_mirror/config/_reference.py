"""docs/configuration.md and config/registry-mirror.toml, generated from the settings dataclasses.

Keys, descriptions, defaults, variables and flags all come from the fields of settings.py and
config_tracker.py (config_fields derives them); tests keep the committed files equal to these.
Only the example values of the rule and upstream tables are written here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from registry_mirror.cli import toml_string
from registry_mirror.config._fields import Key, help_of, keys_of, sections_of
from registry_mirror.config._load import (
    CONFIG_ENV,
    SECTIONS,
    SETTING_KEYS,
    TOML_ONLY_KEYS,
    UPSTREAM_FLAG,
    UPSTREAMS_ENV,
    format_size,
    key_help,
)
from registry_mirror.config._settings import BUILTIN_UPSTREAMS, BlockRule, Settings, SignatureRule, UpstreamSettings
from registry_mirror.config._tracker import TRACKER_KEYS, TrackerSettings

# One line under each section's heading, from the table field's description in Settings.
SECTION_NOTES = {name: note for name, _, note in sections_of(Settings)}
# An example `[[blocklist]]` rule for the example config, in key order.
BLOCK_RULE_EXAMPLE: tuple[tuple[str, str], ...] = (
    ("upstream", '"docker.io"'),
    ("repository", '"example/xz-utils"'),
    ("tag", '"5.6.*"'),
    ("digest", '""'),
    ("hf_repo", '""'),
    ("reason", '"CVE-2024-3094: backdoored xz"'),
)
# An example `[[signatures]]` policy for the example config, in key order.
SIGNATURE_RULE_EXAMPLE: tuple[tuple[str, str], ...] = (
    ("name", '"platform-images"'),
    ("upstream", '"ghcr.io"'),
    ("repositories", '["example-org/*"]'),
    ("public_keys", '["keys/cosign.pub"]'),
    ("mode", '"enforce"'),
)
# Example values of `[upstreams."NAME"]` keys; keys without one are shown as alternatives below.
UPSTREAM_EXAMPLE_NAME = "registry.example.internal"
UPSTREAM_EXAMPLE: dict[str, str] = {
    "url": '"https://registry.example.internal"',
    "username": '"puller"',
    "password_env": '"EXAMPLE_REGISTRY_PASSWORD"',
    "insecure": "false",
    "connect_timeout": "5.0",
    "read_timeout": "20.0",
    "allow_repositories": "[]",
    "library_prefix": "false",
    "max_parallel_ranges": "4",
    "parallel_range_min_size": '"64MiB"',
    "via": '"http://regional-mirror.example.internal:5000"',
}
_UPSTREAM_ALTERNATIVES = {
    "password_file": '"/run/secrets/example-password" (instead of password_env)',
    "token_file": '"/run/secrets/example-token" (a bearer token instead of a password)',
    "token_env": '"EXAMPLE_REGISTRY_TOKEN"',
    "ca_bundle": '"/etc/ssl/certs/example-ca.pem"',
}


def _field_help(cls: type, name: str) -> str:
    return help_of(cls, name)


def _upstream_rows() -> list[tuple[Key, str]]:
    """Each `[upstreams."NAME"]` key with the UpstreamSettings field it fills."""
    return [(key, key.secret or key.path) for key in keys_of(UpstreamSettings)]


def default_literal(key: Key, defaults: object | None = None) -> str:
    """The key's default as a TOML value; "" for an unset secret source or optional path."""
    if key.secret is not None:
        return '""'
    owner = Settings() if defaults is None else defaults
    values = [_attribute(owner, attr) for attr in key.attrs]
    value = values[0]
    if value is None:
        return '""'
    if key.kind in ("list", "paths"):
        return "[" + ", ".join(toml_string(str(item)) for item in value) + "]"  # type: ignore[attr-defined]
    if key.kind == "int":
        return str(value)
    if key.kind == "rate":
        return repr(float(value))  # type: ignore[arg-type]
    if key.kind == "listen":
        return toml_string(f"{values[0]}:{values[1]}")
    if key.kind == "size":
        return toml_string(format_size(int(value)))  # type: ignore[call-overload]
    if key.kind == "bool":
        return "true" if value else "false"
    if key.kind in ("duration", "fraction"):
        return repr(float(value))  # type: ignore[arg-type]
    if key.kind == "path":
        return toml_string(_home_relative(Path(str(value))))
    return toml_string(str(value))


def flag_help(key: Key) -> str:
    """`serve --help` text of a key's flag: description, default, TOML key and variable."""
    default = default_literal(key)
    shown = f"default {default}; " if default not in ('""', "[]") else ""
    return f"{key_help(key)} [{shown}{key.path}, ${key.env}]"


def tracker_flag_help(key: Key) -> str:
    """`tracker --help` text of a flag: description and default."""
    default = default_literal(key, TrackerSettings())
    return key.help + (f" [default {default}]" if default not in ('""', "[]") else "")


def _attribute(owner: object, dotted: str) -> object:
    value: object = owner
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _home_relative(path: Path) -> str:
    # The default depends on $HOME; the committed files must not.
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def _upstream_default(field_name: str) -> str:
    default = {f.name: f.default for f in dataclasses.fields(UpstreamSettings)}[field_name]
    if default is None or default is dataclasses.MISSING:
        return "(unset)"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    return "`[]`" if default == () else f"`{default!r}`"


def render_reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by registry_mirror.config._reference.render_reference(); do not edit. -->",
        "",
        "Settings are read once at start; each layer overrides the one before it:",
        "",
        "1. the defaults below;",
        f"2. the TOML file given by `--config FILE` or `${CONFIG_ENV}`;",
        "3. environment variables `REGISTRY_MIRROR_*`;",
        "4. command-line flags of `registry-mirror serve`.",
        "",
        "An invalid value, an unknown key or an unknown `REGISTRY_MIRROR_*` variable stops the",
        "start with one line naming the field and its source, e.g.",
        "`cache.max_size: expected a size like 50GiB, got 'lots' (from --cache-max-size)`.",
        "Variables Kubernetes injects for a Service named registry-mirror",
        "(`REGISTRY_MIRROR_SERVICE_HOST`, `REGISTRY_MIRROR_PORT...`) are ignored.",
        "",
        "Values: sizes are `50GiB` (binary: KiB, MiB, GiB, TiB), `500MB` (decimal: kB, MB, GB, TB)",
        "or plain bytes; durations are seconds or `250ms`, `30s`, `5m`, `1h`, `1d`; booleans in",
        "the environment are `true/false`, `1/0`, `yes/no` or `on/off`. Relative paths in the file",
        "are relative to the file; in the environment and in flags, to the working directory.",
        "Lists in the environment are comma-separated; list flags are repeated (`--catalog A",
        "--catalog B`); on/off flags also have a `--no-` form (`--no-catalog-insecure`).",
        "Secrets (`client_token`, `p2p.tracker_token`, `admin.token`, upstream passwords) are",
        "never written inline: each is read at start from its `*_file` (trailing newline",
        "dropped) or `*_env` key; one set in a later layer replaces the other.",
        "An example with every setting: `config/registry-mirror.toml`; a JSON Schema of the file",
        "for TOML editors (taplo, Even Better TOML): `config/registry-mirror.schema.json`.",
        "",
    ]
    lines += _key_table("Top level", _top_keys(), toml_only=True)
    for section in SECTIONS:
        lines += _key_table(f"[{section}]", _section_keys(section), note=SECTION_NOTES[section])
    lines += _upstream_section()
    lines += _blocklist_section()
    lines += _signatures_section()
    lines += _tracker_section()
    return "\n".join(lines)


def _top_keys() -> list[Key]:
    return [k for k in SETTING_KEYS if "." not in k.path]


def _section_keys(section: str) -> list[Key]:
    return [k for k in SETTING_KEYS if k.path.startswith(section + ".")]


def _key_table(title: str, keys: list[Key], *, toml_only: bool = False, note: str = "") -> list[str]:
    lines = [f"## {title}", ""]
    if note:
        lines += [note, ""]
    lines += [
        "| Key | Default | Environment | Flag | Description |",
        "|---|---|---|---|---|",
    ]
    for key in keys:
        name = key.path.rpartition(".")[2]
        flag = f"`{key.flag}`" if key.flag else ""
        lines.append(f"| `{name}` | `{default_literal(key)}` | `{key.env}` | {flag} | {key_help(key)} |")
    if toml_only:
        for name, help_text in TOML_ONLY_KEYS.items():
            lines.append(f"| `{name}` | `true` | | | {help_text} |")
    return [*lines, ""]


def _upstream_section() -> list[str]:
    lines = [
        '## [upstreams."NAME"]',
        "",
        "One table per origin; NAME is the registry host containerd sends in `?ns=`",
        "(`docker.io`, `127.0.0.1:5101`). A table for a built-in name changes that upstream;",
        "any other name needs `url`. Secrets are never written inline: `password` and `token`",
        "are read at start from `*_file` (trailing newline dropped) or `*_env` (one of the two).",
        "",
        "| Key | Default | Description |",
        "|---|---|---|",
    ]
    for key, field_name in _upstream_rows():
        default = "required" if key.path == "url" else _upstream_default(field_name)
        lines.append(f"| `{key.path}` | {default} | {_field_help(UpstreamSettings, field_name)} |")
    lines += [
        "",
        f'`{UPSTREAMS_ENV}="name=url,name=url"` and `{UPSTREAM_FLAG} NAME=URL` (repeatable) add an',
        "upstream or replace one whole: credentials and TLS settings of a replaced upstream are",
        "dropped, so they never go to a different URL.",
        "",
        "### Built-in upstreams",
        "",
        "Present unless the file sets `builtin_upstreams = false`.",
        "",
        "| Name | URL |",
        "|---|---|",
        *(f"| `{name}` | {url} |" for name, url in BUILTIN_UPSTREAMS.items()),
        "",
    ]
    return lines


def render_example_config() -> str:
    """config/registry-mirror.toml: every setting at its default, commented out."""
    lines = [
        "#:schema ./registry-mirror.schema.json",
        "# registry-mirror configuration: every setting with its default, commented out.",
        "# Reference: docs/configuration.md. Use it with `registry-mirror serve --config FILE`",
        f"# or {CONFIG_ENV}=FILE; REGISTRY_MIRROR_* variables and flags override it.",
        "",
    ]
    for key in _top_keys():
        lines += [f"# {key_help(key)}", f"# {key.path} = {default_literal(key)}", ""]
    for name, help_text in TOML_ONLY_KEYS.items():
        lines += [f"# {help_text}", f"# {name} = true", ""]
    for section in SECTIONS:
        lines += [f"# {SECTION_NOTES[section]}", f"# [{section}]", ""]
        for key in _section_keys(section):
            lines += [
                f"# {key_help(key)}",
                f"# {key.path.partition('.')[2]} = {default_literal(key)}",
                "",
            ]
    lines += [
        "# One table per origin, named by the registry host containerd sends in ?ns=.",
        f"# [upstreams.{toml_string(UPSTREAM_EXAMPLE_NAME)}]",
    ]
    described = set()
    for key, field_name in _upstream_rows():
        if field_name not in described:
            lines.append(f"# {_field_help(UpstreamSettings, field_name)}")
            described.add(field_name)
        if key.path in UPSTREAM_EXAMPLE:
            lines.append(f"# {key.path} = {UPSTREAM_EXAMPLE[key.path]}")
        else:
            lines.append(f"#   e.g. {key.path} = {_UPSTREAM_ALTERNATIVES[key.path]}")
    lines += [
        "",
        "# Pulls matching a rule are refused with its reason; one [[blocklist]] table per rule.",
        "# [[blocklist]]",
    ]
    for rule_key, example in BLOCK_RULE_EXAMPLE:
        lines += [f"# {_field_help(BlockRule, rule_key)}", f"# {rule_key} = {example}"]
    lines += [
        "",
        "# Manifests of matching repositories must carry a cosign signature by one of the keys.",
        "# [[signatures]]",
    ]
    for rule_key, example in SIGNATURE_RULE_EXAMPLE:
        lines += [f"# {_field_help(SignatureRule, rule_key)}", f"# {rule_key} = {example}"]
    return "\n".join(lines) + "\n"


def _blocklist_section() -> list[str]:
    return _rule_tables(
        "blocklist",
        [
            "Rules that refuse matching pulls with their reason; one `[[blocklist]]` table per rule,",
            "in the file only (the admin API changes them at run time). A rule matches when every",
            "condition it sets matches; globs use `*`, `?` and `[...]`. Errors name a rule by its",
            "position from 0, e.g. `blocklist[2].digest`.",
        ],
        BlockRule,
    )


def _signatures_section() -> list[str]:
    return _rule_tables(
        "signatures",
        [
            'Signature policies (docs/security.md, "Signature policy"): before a manifest of a',
            "matching repository is served, by tag or by digest, it must carry a keyed cosign",
            "signature by one of `public_keys`, found at the `sha256-<hex>.sig` tag or through the",
            "referrers API. One `[[signatures]]` table per policy, in the file only; the first policy",
            "that matches a repository applies. Keyless (Fulcio/Rekor) signatures are not checked.",
            "Errors name a policy by its position from 0, e.g. `signatures[1].public_keys`.",
        ],
        SignatureRule,
    )


def _rule_tables(name: str, intro: list[str], rule: type) -> list[str]:
    lines = [f"## [[{name}]]", "", *intro, "", "| Key | Default | Description |", "|---|---|---|"]
    defaults = {f.name: f.default for f in dataclasses.fields(rule)}
    for key in (k.path for k in keys_of(rule)):
        default = defaults[key]
        shown = "required" if default is dataclasses.MISSING else f"`{toml_string(str(default))}`"
        lines.append(f"| `{key}` | {shown} | {_field_help(rule, key)} |")
    return [*lines, ""]


def _tracker_section() -> list[str]:
    lines = [
        "## registry-mirror tracker",
        "",
        'The stand-alone p2p tracker (`registry-mirror tracker`; `p2p.tracker = "embedded"` runs one',
        "inside the mirror instead) is configured by flags only, with the value syntax above. It",
        "needs `--node-secret-file`, `--node-tokens-file`, `--token-file` and/or `--tls-ca`, or",
        "`--no-auth` on a trusted network.",
        "",
        "| Flag | Default | Description |",
        "|---|---|---|",
    ]
    for key in TRACKER_KEYS:
        flag = f"`--[no-]{str(key.flag)[2:]}`" if key.kind == "bool" else f"`{key.flag}`"
        lines.append(f"| {flag} | `{default_literal(key, TrackerSettings())}` | {key.help} |")
    return [*lines, ""]
