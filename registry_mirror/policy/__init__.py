"""Who may pull what, how fast: blocklist, client token, rate limits and upstream caps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.policy._asgi import PolicyGate as PolicyGate
    from registry_mirror.policy._blocklist import Blocklist as Blocklist
    from registry_mirror.policy._blocklist import InvalidRule as InvalidRule
    from registry_mirror.policy._blocklist import Rule as Rule
    from registry_mirror.policy._blocklist import Subject as Subject
    from registry_mirror.policy._blocklist import rule_from_mapping as rule_from_mapping
    from registry_mirror.policy._client_auth import ClientAuth as ClientAuth
    from registry_mirror.policy._gate import Policy as Policy
    from registry_mirror.policy._provenance import Provenance as Provenance
    from registry_mirror.policy._ratelimit import ClientRateLimiter as ClientRateLimiter
    from registry_mirror.policy._ratelimit import UpstreamLimits as UpstreamLimits
    from registry_mirror.policy._setup import build_policy as build_policy
    from registry_mirror.policy._setup import build_upstream_limits as build_upstream_limits

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_asgi": ("PolicyGate",),
        "_blocklist": (
            "Blocklist",
            "InvalidRule",
            "Rule",
            "Subject",
            "rule_from_mapping",
        ),
        "_client_auth": ("ClientAuth",),
        "_gate": ("Policy",),
        "_provenance": ("Provenance",),
        "_ratelimit": (
            "ClientRateLimiter",
            "UpstreamLimits",
        ),
        "_setup": (
            "build_policy",
            "build_upstream_limits",
        ),
    },
)
