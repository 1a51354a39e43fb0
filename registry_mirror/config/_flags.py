"""argparse flags derived from settings keys: one flag per key that declares a `flag`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

from registry_mirror.config._fields import Key

# Placeholders shown in --help, by Key.kind.
_METAVARS = {"size": "SIZE", "duration": "SECONDS", "path": "PATH", "paths": "PATH", "list": "REF",
             "listen": "HOST:PORT", "int": "N", "rate": "N"}  # fmt: skip


def add_flags(parser: argparse.ArgumentParser, keys: Iterable[Key], describe: Callable[[Key], str]) -> None:
    """A flag for each key with a `cli` name; on/off keys get a --no- form, lists repeat.

    Flags default to None (not given), so a flag only overrides the layers below it when given.
    """
    for key in keys:
        if key.flag is None:
            continue
        help_text = describe(key).replace("%", "%%")
        if key.kind == "bool":
            parser.add_argument(key.flag, dest=key.cli, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        parser.add_argument(
            key.flag,
            dest=key.cli,
            action="append" if key.repeatable else "store",
            metavar="HOST:PORT" if key.path.endswith("listen") else _METAVARS.get(key.kind, "VALUE"),
            help=help_text + (" (repeatable)" if key.repeatable else ""),
        )
