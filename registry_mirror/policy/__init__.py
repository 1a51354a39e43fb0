"""Who may pull what, how fast: blocklist, client token, rate limits and upstream caps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

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

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_asgi": ["PolicyGate"],
        "_blocklist": ["Blocklist", "InvalidRule", "Rule", "Subject", "rule_from_mapping"],
        "_client_auth": ["ClientAuth"],
        "_gate": ["Policy"],
        "_provenance": ["Provenance"],
        "_ratelimit": ["ClientRateLimiter", "UpstreamLimits"],
        "_setup": ["build_policy", "build_upstream_limits"],
    },
)
