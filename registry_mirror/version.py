"""The installed package's version, for `--version`, `ctl status` and the lock file."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("registry-mirror")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"
