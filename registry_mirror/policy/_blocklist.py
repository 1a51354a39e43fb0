"""Blocklist rules: refuse pulls by upstream, repository glob, tag glob, digest or HF repo.

Rules come from two places: the `[[blocklist]]` tables of the config file (re-read when its mtime
changes) and the admin API (kept in memory until restart). A broken file never breaks pulls: the
previous rules stay in force and the failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from registry_mirror.policy import _metrics as metrics

log = logging.getLogger("registry_mirror.policy")

DEFAULT_REASON = "blocked by the mirror's operator"
MATCH_FIELDS = ("upstream", "repository", "tag", "digest", "hf_repo")
Origin = Literal["file", "admin"]


class InvalidRule(ValueError):
    """A rule that matches nothing specific or has an unknown field."""


@dataclass(frozen=True)
class Rule:
    upstream: str | None = None  # glob on the registry name (docker.io, 127.0.0.1:5101)
    repository: str | None = None  # glob on the repository (library/*, team/app)
    tag: str | None = None  # glob on a manifest tag
    digest: str | None = None  # exact digest (manifest or blob)
    hf_repo: str | None = None  # glob on a Hugging Face repo id (org/name), for model delivery
    reason: str = DEFAULT_REASON

    def __post_init__(self) -> None:
        if not any(getattr(self, name) for name in MATCH_FIELDS):
            raise InvalidRule(f"a rule needs at least one of {', '.join(MATCH_FIELDS)}")

    @property
    def id(self) -> str:
        """Stable across reloads and restarts: a hash of what the rule matches."""
        key = json.dumps([getattr(self, name) for name in MATCH_FIELDS])
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def matches(self, subject: Subject) -> bool:
        if self.hf_repo is not None:
            # Hub repo ids are case-insensitive (Org/Name and org/name are one repo).
            if subject.hf_repo is None or not fnmatchcase(subject.hf_repo.lower(), self.hf_repo.lower()):
                return False
        elif subject.hf_repo is not None:
            return False  # OCI rules never match model files, and the other way round
        return (
            _glob(self.upstream, subject.upstream)
            and self._repository_matches(subject)
            and _glob(self.tag, subject.tag)
            and (self.digest is None or self.digest == subject.digest)
        )

    def _repository_matches(self, subject: Subject) -> bool:
        if _glob(self.repository, subject.repository):
            return True
        # The subject is normalised (`alpine` -> `library/alpine` on Docker Hub); a rule written with
        # the short name means the same repository there.
        pattern = self.repository
        return (
            subject.library_prefixed
            and pattern is not None
            and "/" not in pattern
            and _glob("library/" + pattern, subject.repository)
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **{k: v for k, v in asdict(self).items() if v is not None}}


@dataclass(frozen=True)
class Subject:
    """What a request asks for, in the terms rules match on."""

    upstream: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    hf_repo: str | None = None
    library_prefixed: bool = False  # the upstream keeps one-component names under `library/`


def _glob(pattern: str | None, value: str | None) -> bool:
    if pattern is None or pattern == "*":
        return True
    return value is not None and fnmatchcase(value, pattern)


def rule_from_mapping(values: Mapping[str, Any]) -> Rule:
    """A rule from TOML, JSON or a settings object's fields; unknown keys are an error."""
    known = {f.name for f in fields(Rule)}
    unknown = set(values) - known - {"id"}
    if unknown:
        raise InvalidRule(f"unknown rule field(s): {', '.join(sorted(unknown))}")
    cleaned: dict[str, Any] = {}
    for name in known:
        value = values.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidRule(f"{name}: expected a string, got {value!r}")
        cleaned[name] = value.strip()
    return Rule(**cleaned)


def rule_from_object(obj: object) -> Rule:
    """From settings' BlockRule (or anything with the same attributes)."""
    return rule_from_mapping({name: getattr(obj, name, None) for name in (*MATCH_FIELDS, "reason")})


RuleLoader = Callable[[Path], tuple[Rule, ...]]


class Blocklist:
    def __init__(
        self,
        file_rules: Iterable[Rule] = (),
        config_file: Path | None = None,
        load_rules: RuleLoader | None = None,
        admin_state: Path | None = None,
    ) -> None:
        """`load_rules(config_file)` re-reads the file's rules on change (raises ValueError when bad).
        `admin_state`: where rules added through the admin API are kept, so an emergency block
        survives a restart (a JSON list, written atomically)."""
        self._file_rules: tuple[Rule, ...] = tuple(file_rules)
        self._admin_state = admin_state
        self._admin_rules: dict[str, Rule] = {rule.id: rule for rule in _load_admin_rules(admin_state)}
        self._config_file = config_file
        self._load_rules = load_rules
        self._watcher: asyncio.Task[None] | None = None
        self._mtime = _mtime(config_file) if config_file is not None else None

    # -- queries -------------------------------------------------------------------------------
    def rules(self) -> list[tuple[Origin, Rule]]:
        listed: list[tuple[Origin, Rule]] = [("file", rule) for rule in self._file_rules]
        return listed + [("admin", rule) for rule in self._admin_rules.values()]

    def match(self, subject: Subject) -> Rule | None:
        for rule in self._file_rules:
            if rule.matches(subject):
                return rule
        for rule in self._admin_rules.values():
            if rule.matches(subject):
                return rule
        return None

    def __bool__(self) -> bool:
        return bool(self._file_rules or self._admin_rules)

    # -- admin API -----------------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        self._admin_rules[rule.id] = rule
        self._save_admin_rules()
        log.warning("blocklist: rule %s added via admin API: %s", rule.id, rule.to_json())
        return rule

    def remove(self, rule_id: str) -> Origin | None:
        """Remove an admin rule: "admin"; a file rule stays (edit the file): "file"; unknown: None."""
        if self._admin_rules.pop(rule_id, None) is not None:
            self._save_admin_rules()
            log.warning("blocklist: rule %s removed via admin API", rule_id)
            return "admin"
        if any(rule.id == rule_id for rule in self._file_rules):
            return "file"
        return None

    def _save_admin_rules(self) -> None:
        if self._admin_state is None:
            return
        payload = json.dumps([rule.to_json() for rule in self._admin_rules.values()], indent=1).encode()
        self._admin_state.parent.mkdir(parents=True, exist_ok=True)
        temp = self._admin_state.with_name(self._admin_state.name + ".tmp")
        with open(temp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self._admin_state)

    # -- hot reload ----------------------------------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Re-read the config file's rules when its mtime moved; True when the rules were replaced."""
        if self._config_file is None or self._load_rules is None:
            return False
        mtime = _mtime(self._config_file)
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            rules = self._load_rules(self._config_file) if mtime is not None else ()
        except (OSError, ValueError) as exc:
            metrics.blocklist_reloads.add(1, {"result": "error"})
            log.error(
                "blocklist: keeping %d rules, cannot reload %s: %s", len(self._file_rules), self._config_file, exc
            )
            return False
        self._file_rules = rules
        metrics.blocklist_reloads.add(1, {"result": "ok"})
        log.warning("blocklist: reloaded %d rules from %s", len(rules), self._config_file)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the config file's mtime until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    async def start_watching(self, interval: float = 1.0) -> None:
        """An app startup hook: poll in a background task when there is a file to poll."""
        if self._config_file is not None and self._load_rules is not None:
            self._watcher = asyncio.get_running_loop().create_task(self.watch(interval), name="blocklist watch")

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None


def _mtime(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    # Size and inode too: two writes within one mtime tick, or an atomic rename (ConfigMap updates).
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _load_admin_rules(path: Path | None) -> list[Rule]:
    if path is None or not path.exists():
        return []
    try:
        entries = json.loads(path.read_bytes())
        return [rule_from_mapping(entry) for entry in entries]
    except (OSError, ValueError, TypeError, InvalidRule) as exc:
        # A broken state file must not stop the mirror; say so loudly and start without it.
        log.error("blocklist: ignoring unreadable admin rules in %s: %s", path, exc)
        return []
