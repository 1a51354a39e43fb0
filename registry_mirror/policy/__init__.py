"""Who may pull what, how fast: blocklist, client token, rate limits and upstream caps."""

from registry_mirror.policy.blocklist import Blocklist, InvalidRule, Rule, Subject, rule_from_mapping
from registry_mirror.policy.client_auth import ClientAuth
from registry_mirror.policy.gate import Policy
from registry_mirror.policy.ratelimit import ClientRateLimiter, TokenBucket, UpstreamLimits

__all__ = [
    "Blocklist",
    "ClientAuth",
    "ClientRateLimiter",
    "InvalidRule",
    "Policy",
    "Rule",
    "Subject",
    "TokenBucket",
    "UpstreamLimits",
    "rule_from_mapping",
]
