"""Settings: the typed model with its embedded defaults, loading (TOML < environment < flags),
value types and the generated reference."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.config._flags import add_flags as add_flags
    from registry_mirror.config._load import CONFIG_ENV as CONFIG_ENV
    from registry_mirror.config._load import SETTING_KEYS as SETTING_KEYS
    from registry_mirror.config._load import UPSTREAM_FLAG as UPSTREAM_FLAG
    from registry_mirror.config._load import VIA_FLAG as VIA_FLAG
    from registry_mirror.config._load import ConfigError as ConfigError
    from registry_mirror.config._load import load_blocklist as load_blocklist
    from registry_mirror.config._load import load_settings as load_settings
    from registry_mirror.config._load import serve_flags as serve_flags
    from registry_mirror.config._reference import flag_help as flag_help
    from registry_mirror.config._reference import tracker_flag_help as tracker_flag_help
    from registry_mirror.config._settings import BUILTIN_UPSTREAMS as BUILTIN_UPSTREAMS
    from registry_mirror.config._settings import P2PSettings as P2PSettings
    from registry_mirror.config._settings import Settings as Settings
    from registry_mirror.config._settings import UpstreamSettings as UpstreamSettings
    from registry_mirror.config._settings import default_cache_dir as default_cache_dir
    from registry_mirror.config._tracker import TRACKER_KEYS as TRACKER_KEYS
    from registry_mirror.config._tracker import TrackerSettings as TrackerSettings
    from registry_mirror.config._tracker import load_tracker_settings as load_tracker_settings
    from registry_mirror.config._values import InvalidValue as InvalidValue
    from registry_mirror.config._values import MiB as MiB
    from registry_mirror.config._values import format_size as format_size
    from registry_mirror.config._values import parse_duration as parse_duration
    from registry_mirror.config._values import parse_listen as parse_listen
    from registry_mirror.config._values import parse_registry_name as parse_registry_name
    from registry_mirror.config._values import parse_size as parse_size

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_flags": ["add_flags"],
        "_load": [
            "CONFIG_ENV",
            "ConfigError",
            "SETTING_KEYS",
            "UPSTREAM_FLAG",
            "VIA_FLAG",
            "load_blocklist",
            "load_settings",
            "serve_flags",
        ],
        "_reference": ["flag_help", "tracker_flag_help"],
        "_settings": ["BUILTIN_UPSTREAMS", "P2PSettings", "Settings", "UpstreamSettings", "default_cache_dir"],
        "_tracker": ["TRACKER_KEYS", "TrackerSettings", "load_tracker_settings"],
        "_values": [
            "InvalidValue",
            "MiB",
            "format_size",
            "parse_duration",
            "parse_listen",
            "parse_registry_name",
            "parse_size",
        ],
    },
)
