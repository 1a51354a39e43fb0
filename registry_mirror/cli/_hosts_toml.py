"""Render containerd `hosts.toml` files that send pulls of a registry to this mirror.

Format: containerd docs/hosts.md. The mirror is a `[host."URL"]` with pull and resolve (it is a
private mirror, trusted to resolve tags); `server` is the registry itself, which containerd uses
when the mirror is down or answers 404/500.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from registry_mirror.config import BUILTIN_UPSTREAMS, InvalidValue, parse_registry_name

HEADER_COMMENT = "# Written by `registry-mirror hosts-toml`; containerd re-reads it on every pull.\n"
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_mirror_url(value: str) -> str:
    """http(s)://host[:port][/prefix] with no trailing slash, query or credentials."""
    parts = urlsplit(value.strip())
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("credentials in the mirror URL are not accepted")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidValue(f"expected a URL like http://127.0.0.1:5000, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidValue(f"bad port in {value!r}") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_header(value: str) -> tuple[str, str]:
    name, sep, header_value = value.partition("=")
    if not sep or not _HEADER_NAME_RE.match(name.strip()):
        raise InvalidValue(f"expected NAME=VALUE with an HTTP header name, got {value!r}")
    if any(ch in header_value for ch in "\r\n\0"):
        raise InvalidValue(f"header {name.strip()!r}: the value must be one line")
    return name.strip(), header_value.strip()


def registry_directory(registry: str) -> str:
    """The directory containerd looks up for a registry: its host, with `:port` on Unix."""
    return parse_registry_name(registry)


def toml_string(text: str) -> str:
    """A TOML basic string; control characters escaped (TOML forbids them raw)."""
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def default_server(registry: str) -> str:
    """Where containerd pulls `registry` from without a mirror."""
    return BUILTIN_UPSTREAMS.get(registry) or f"https://{registry}"


def _toml_key(name: str) -> str:
    return name if _BARE_KEY_RE.match(name) else toml_string(name)


def render_hosts_toml(
    registry: str,
    mirror_url: str,
    *,
    server_url: str | None = None,
    override_path: bool = False,
    headers: Mapping[str, str] | None = None,
    no_fallback: bool = False,
) -> str:
    """hosts.toml for `registry`: try `mirror_url` first, then `server_url`.

    `no_fallback`: the mirror is the only host (it is the `server` too, with the same headers), so
    a 403 from the blocklist, or any other failure of the mirror, ends the pull instead of sending
    containerd to the registry itself.

    `server_url` defaults to the real endpoint of a built-in registry (docker.io ->
    https://registry-1.docker.io), else https://<registry>, written out so that the file says
    where a pull goes when the mirror fails (containerd's own default is the same).
    With `override_path`, containerd takes the mirror URL path as the API root (no `/v2` added).
    """
    parse_registry_name(registry)
    mirror = parse_mirror_url(mirror_url)
    server = server_url if server_url is not None else default_server(registry)
    if no_fallback:
        server = mirror  # containerd falls back to `server`, or to https://<registry> without one
    lines = [HEADER_COMMENT.rstrip("\n")]
    lines.append(f"server = {toml_string(parse_mirror_url(server))}")
    if no_fallback and override_path:
        lines.append("override_path = true")
    if no_fallback and headers:
        lines.append("[header]")  # sent to the server, which is the mirror here
        for name, value in headers.items():
            name, value = parse_header(f"{name}={value}")
            lines.append(f"  {_toml_key(name)} = {toml_string(value)}")
    host = f"host.{toml_string(mirror)}"
    lines += ["", f"[{host}]", '  capabilities = ["pull", "resolve"]']
    if override_path:
        lines.append("  override_path = true")
    if headers:
        lines.append(f"  [{host}.header]")
        for name, value in headers.items():
            name, value = parse_header(f"{name}={value}")
            lines.append(f"    {_toml_key(name)} = {toml_string(value)}")
    return "\n".join(lines) + "\n"


def write_hosts_dir(
    out: Path,
    registries: Iterable[str],
    mirror_url: str,
    *,
    servers: Mapping[str, str] | None = None,
    override_path: bool = False,
    headers: Mapping[str, str] | None = None,
    no_fallback: bool = False,
) -> list[Path]:
    """Write `out/<registry>/hosts.toml` for each registry; returns the files written. With
    headers (a client token, usually) the files are 0600: readable by root only."""
    written = []
    for registry in registries:
        text = render_hosts_toml(
            registry,
            mirror_url,
            server_url=(servers or {}).get(registry),
            override_path=override_path,
            headers=headers,
            no_fallback=no_fallback,
        )
        path = out / registry_directory(registry) / "hosts.toml"
        _write_atomically(path, text, 0o600 if headers else 0o644)
        written.append(path)
    return written


def remove_hosts_dir(out: Path, registries: Iterable[str] | None = None) -> list[Path]:
    """Remove the hosts.toml files `write_hosts_dir` wrote for `registries` (None: for every
    registry under `out`), and their directories when then empty; a file someone else wrote (no
    header comment of ours) is left alone. Returns the files removed."""
    removed = []
    paths = (
        sorted(out.glob("*/hosts.toml"))
        if registries is None
        else [out / registry_directory(registry) / "hosts.toml" for registry in registries]
    )
    for path in paths:
        try:
            with path.open(encoding="utf-8") as handle:
                ours = handle.readline() == HEADER_COMMENT
        except FileNotFoundError:
            continue
        if not ours:
            continue
        path.unlink()
        removed.append(path)
        try:
            path.parent.rmdir()
        except OSError:
            pass  # other files (certificates) live there too
    return removed


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    # containerd reads hosts.toml on every pull: it must never see a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".hosts.toml.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(temp, mode)  # mkstemp made it 0600: nobody else could read it meanwhile
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
