"""Point containerd's CRI registry `config_path` at a hosts.toml directory, editing config.toml in place.

containerd reads hosts.toml only where its CRI plugin is told to (`config_path`); a node's stock
config often leaves it unset. The edit keeps the operator's comments and layout (tomlkit), is
written atomically, and is a no-op when the file already says it. containerd reads config.toml only
at start: after a change it must be restarted (running containers survive that).

- config version 2 (containerd 1.x): `[plugins."io.containerd.grpc.v1.cri".registry] config_path`.
- config version 3 (containerd 2.x): `[plugins."io.containerd.cri.v1.images".registry] config_path`;
  and CRI pulls go through the transfer service, which ignores hosts.toml, unless
  `[plugins."io.containerd.cri.v1.images"] use_local_image_pull = true`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError
from tomlkit.items import Table

CRI_V2 = "io.containerd.grpc.v1.cri"
CRI_IMAGES_V3 = "io.containerd.cri.v1.images"


class ContainerdConfigError(Exception):
    """The file cannot be edited safely; the message says why."""


def point_at_hosts_dir(config: Path, hosts_dir: Path, *, local_image_pull: bool = False) -> bool:
    """Set config_path (and, for version 3 with `local_image_pull`, use_local_image_pull) in
    `config`; returns whether the file changed. A missing file is created as version 2."""
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = "version = 2\n"
    try:
        document = tomlkit.parse(text)
    except ParseError as exc:
        raise ContainerdConfigError(f"{config} is not valid TOML: {exc}") from None
    _apply(document, str(hosts_dir), local_image_pull)
    new_text = tomlkit.dumps(document)
    if new_text == text and config.exists():
        return False
    _write_atomically(config, new_text)
    return True


def _apply(document: Any, hosts_dir: str, local_image_pull: bool) -> None:
    version = document.get("version", 1)
    plugins = _table(document, "plugins")
    if version == 2:
        registry = _table(_table(plugins, CRI_V2), "registry")
        if local_image_pull:
            raise ContainerdConfigError("use_local_image_pull exists in config version 3 (containerd 2.x) only")
    elif version == 3:
        images = _table(plugins, CRI_IMAGES_V3)
        registry = _table(images, "registry")
        if local_image_pull:
            images["use_local_image_pull"] = True
    else:
        raise ContainerdConfigError(f"config version {version!r} is not supported (expected 2 or 3)")
    legacy = [key for key in ("mirrors", "configs") if key in registry]
    if legacy:
        # containerd refuses to start with both ("mirrors cannot be set when config_path is provided").
        raise ContainerdConfigError(
            f"registry.{legacy[0]} is set: move it into hosts.toml files before using config_path"
        )
    if registry.get("config_path") != hosts_dir:
        registry["config_path"] = hosts_dir


def _table(parent: Any, key: str) -> Table:
    """parent[key] as a table, created (as a super-table header, like containerd's own dumps) when
    missing; an existing non-table value there is an error rather than silently replaced."""
    if key not in parent:
        parent[key] = tomlkit.table(is_super_table=True)
    value = parent[key]
    if not isinstance(value, dict):
        raise ContainerdConfigError(f"{key!r} is not a table")
    return value  # type: ignore[return-value]  # tomlkit Tables are dicts; mypy knows only the dict


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
