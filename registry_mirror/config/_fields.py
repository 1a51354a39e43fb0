"""One declaration per setting: a dataclass field whose metadata carries everything else.

A settings dataclass declares each setting once, with `setting()` (or `secret()`, `table()`):
its type and default, its description, its value parser, and its flag when it has one. The
TOML keys, the `REGISTRY_MIRROR_*` variables, the command-line flags and the reference docs are
all derived from those fields by `keys_of()`; nothing lists the settings a second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_mirror.config._values import (
    parse_bool,
    parse_count,
    parse_duration,
    parse_env_name,
    parse_optional_env_name,
    parse_optional_path,
    parse_path,
    parse_text,
    parse_timeout,
    sized,
)

ENV_PREFIX = "REGISTRY_MIRROR_"
_SPEC = "registry_mirror.setting"
_HELP = "help"

Parser = Callable[[object], object]


@dataclass(frozen=True)
class Spec:
    """What a field's metadata says about the setting it holds."""

    help: str
    parse: Parser
    # How docs and flags render it: text, size, duration, fraction, bool, path, listen, int,
    # rate, list (of text), paths, secret.
    kind: str
    flag: str | None = (
        None  # the command-line name ({table}, {name}: the table's, the field's); the flag is --<flag with dashes>
    )
    env: str | None = None  # variable suffix when not the dotted path (CACHE_DIR)
    key: str | None = None  # TOML key when not the field name (listen)
    attrs: tuple[str, ...] = ()  # fields the key sets when not just this one (host and port)
    what: str = ""  # secrets: what the secret is, for the *_file / *_env descriptions
    blank_unsets: bool = True  # secrets: "" in *_file / *_env means unset (else an error)
    example: str | None = None  # docs: a TOML value for the example configuration


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    parse: Parser,
    kind: str,
    flag: str | None = None,
    env: str | None = None,
    key: str | None = None,
    attrs: tuple[str, ...] = (),
    factory: Callable[[], Any] | None = None,
    example: str | None = None,
) -> Any:
    """A dataclass field for one setting (no default: required, as in `[[blocklist]]` reason)."""
    spec = Spec(help, parse, kind, flag, env, key, attrs, example=example)
    metadata = {_SPEC: spec, _HELP: help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def secret(help: str, *, what: str, file_flag: str | None = None, blank_unsets: bool = True) -> Any:
    """A secret read at load from `<name>_file` or `<name>_env`; never inline, never in repr."""
    spec = Spec(help, parse_path, "secret", file_flag, what=what, blank_unsets=blank_unsets)
    return dataclasses.field(default=None, repr=False, metadata={_SPEC: spec, _HELP: help})


def table(factory: Callable[[], Any], help: str) -> Any:
    """A sub-table ([cache], [p2p], ...); `help` is the line under its heading in the docs."""
    return dataclasses.field(default_factory=factory, metadata={_HELP: help})


def described(default: Any = dataclasses.MISSING, *, help: str, repr: bool = True) -> Any:
    """A field that is not a key of its own (set by another key, or by the table's name)."""
    return dataclasses.field(default=default, repr=repr, metadata={_HELP: help})


# Shorthands for the common kinds; each returns setting(...) typed as the field's type.


def size(default: int, help: str, minimum: int, maximum: int | None = None, flag: str | None = None) -> int:
    result: int = setting(default, help=help, parse=sized(minimum, maximum), kind="size", flag=flag)
    return result


def seconds(default: float, help: str, *, positive: bool = False, flag: str | None = None) -> float:
    parse = parse_timeout if positive else parse_duration
    result: float = setting(default, help=help, parse=parse, kind="duration", flag=flag)
    return result


def count(default: int, help: str, minimum: int, flag: str | None = None) -> int:
    result: int = setting(default, help=help, parse=parse_count(minimum), kind="int", flag=flag)
    return result


def switch(default: bool, help: str, flag: str | None = None) -> bool:
    result: bool = setting(default, help=help, parse=parse_bool, kind="bool", flag=flag)
    return result


def text(default: str, help: str, parse: Parser = parse_text, flag: str | None = None) -> str:
    result: str = setting(default, help=help, parse=parse, kind="text", flag=flag)
    return result


def optional_path(help: str, flag: str | None = None) -> Path | None:
    result: Path | None = setting(None, help=help, parse=parse_optional_path, kind="path", flag=flag)
    return result


def help_of(cls: type, name: str) -> str:
    for field in dataclasses.fields(cls):
        if field.name == name:
            return str(field.metadata.get(_HELP, ""))
    raise KeyError(name)


def spec_of(field: dataclasses.Field[Any]) -> Spec | None:
    spec = field.metadata.get(_SPEC)
    return spec if isinstance(spec, Spec) else None


def sections_of(cls: type) -> Iterator[tuple[str, type, str]]:
    """(name, dataclass, help) of each sub-table field of `cls`, in declaration order."""
    for field in dataclasses.fields(cls):
        if spec_of(field) is None and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
            if dataclasses.is_dataclass(default):
                yield field.name, type(default), str(field.metadata.get(_HELP, ""))


@dataclass(frozen=True)
class Key:
    """One TOML key, with its variable and flag, derived from a field's Spec."""

    path: str  # dotted TOML path (cache.max_size); also the attribute it sets
    parse: Parser
    kind: str
    help: str
    cli: str | None = None  # key in the loader's `cli` mapping; the flag is --<cli with dashes>
    env_name: str | None = None  # when not REGISTRY_MIRROR_<PATH>
    attrs_set: tuple[str, ...] = ()  # when not just `path` (listen sets host and port)
    secret: str | None = None  # *_file / *_env keys: the secret attribute they fill
    example: str | None = None

    @property
    def env(self) -> str:
        return self.env_name or ENV_PREFIX + self.path.replace(".", "_").upper()

    @property
    def attrs(self) -> tuple[str, ...]:
        return self.attrs_set or (self.path,)

    @property
    def flag(self) -> str | None:
        return "--" + self.cli.replace("_", "-") if self.cli else None

    @property
    def name(self) -> str:
        """The key inside its table (max_size)."""
        return self.path.rpartition(".")[2]

    def spread(self, value: object) -> dict[str, object]:
        """The attributes a parsed value sets: listen's (host, port) sets two."""
        if len(self.attrs) == 1:
            return {self.attrs[0]: value}
        assert isinstance(value, tuple), self.path
        return dict(zip(self.attrs, value, strict=True))

    @property
    def repeatable(self) -> bool:
        return self.kind in ("list", "paths")


def keys_of(cls: type, prefix: str = "") -> list[Key]:
    """The keys the fields of `cls` declare, in order; `prefix` is the table's dotted path."""
    keys: list[Key] = []
    for field in dataclasses.fields(cls):
        spec = spec_of(field)
        if spec is None:
            continue
        path = prefix + (spec.key or field.name)
        if spec.kind == "secret":
            keys += _secret_keys(path, spec)
            continue
        env = ENV_PREFIX + spec.env if spec.env else None
        attrs = tuple(prefix + attr for attr in spec.attrs)
        flag = spec.flag.format(table=prefix.rstrip("."), name=field.name) if spec.flag else None
        keys.append(Key(path, spec.parse, spec.kind, spec.help, flag, env, attrs, example=spec.example))
    return keys


def _secret_keys(path: str, spec: Spec) -> tuple[Key, Key]:
    """`<path>_file` and `<path>_env`: where the secret `path` is read from (one of the two)."""
    name = path.rpartition(".")[2]
    file_parse: Parser = parse_optional_path if spec.blank_unsets else parse_path
    env_parse: Parser = parse_optional_env_name if spec.blank_unsets else parse_env_name
    blank = '; "" is unset' if spec.blank_unsets else ""
    return (
        Key(f"{path}_file", file_parse, "path", f"File holding the {spec.what} (trailing newline dropped){blank}.",
            spec.flag, secret=path),
        Key(f"{path}_env", env_parse, "text", f"Environment variable holding the {spec.what}; instead of {name}_file.",
            secret=path),
    )  # fmt: skip


def all_keys(cls: type) -> tuple[Key, ...]:
    """The top-level keys of `cls`, then each sub-table's, in declaration order."""
    keys = keys_of(cls)
    for name, section, _ in sections_of(cls):
        keys += keys_of(section, name + ".")
    return tuple(keys)


def required_keys(cls: type) -> tuple[str, ...]:
    """Keys of `cls` whose fields have no default (required in a `[[table]]`)."""
    return tuple(
        spec.key or field.name
        for field in dataclasses.fields(cls)
        if (spec := spec_of(field)) is not None
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )
