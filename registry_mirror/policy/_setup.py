"""Build the policy objects from Settings (the only module here that knows Settings' shape)."""

from __future__ import annotations

from pathlib import Path

from registry_mirror.config import Settings
from registry_mirror.policy._blocklist import Blocklist, Rule, rule_from_object
from registry_mirror.policy._client_auth import ClientAuth
from registry_mirror.policy._gate import Policy
from registry_mirror.policy._ratelimit import ClientRateLimiter, UpstreamLimits


def blocklist_from_config_file(path: Path) -> tuple[Rule, ...]:
    """The file's `[[blocklist]]` rules, validated exactly as at startup; ValueError when bad."""
    from registry_mirror.config import ConfigError, load_blocklist  # same validation as the loader

    try:
        return tuple(rule_from_object(rule) for rule in load_blocklist(path))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def build_policy(settings: Settings, config_file: Path | None = None) -> Policy:
    """`config_file`: re-read for blocklist changes (Blocklist.watch) when given."""
    limits = settings.limits
    return Policy(
        default_upstream=settings.default_upstream,
        blocklist=Blocklist(
            (rule_from_object(rule) for rule in settings.blocklist),
            config_file,
            blocklist_from_config_file,
            admin_state=settings.cache.directory / "admin-blocklist.json",
        ),
        client_auth=ClientAuth(settings.client_token) if settings.client_token else None,
        client_limiter=ClientRateLimiter(limits.client_rate, limits.client_burst) if limits.client_rate > 0 else None,
        library_prefixed=[upstream.name for upstream in settings.upstreams if upstream.library_prefix],
    )


def build_upstream_limits(settings: Settings) -> UpstreamLimits | None:
    limits = UpstreamLimits(
        settings.limits.upstream_concurrency or None,
        settings.limits.upstream_bandwidth or None,
        chunk_size=settings.cache.chunk_size,
    )
    return limits if limits.enabled else None
