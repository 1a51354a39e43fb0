"""The policy gate a parsed request passes before any handler: rate limit (429), client token
(401), blocklist (403). Cheap when nothing is configured: three `None` checks."""

from __future__ import annotations

from collections.abc import Mapping

from registry_mirror.errors import ErrorCode, OCIError
from registry_mirror.paths import DOCKER_HUB_HOSTS, DistributionRequest
from registry_mirror.policy import metrics
from registry_mirror.policy.blocklist import Blocklist, Subject
from registry_mirror.policy.client_auth import ClientAuth
from registry_mirror.policy.ratelimit import ClientRateLimiter


class Policy:
    def __init__(
        self,
        *,
        default_upstream: str,
        blocklist: Blocklist | None = None,
        client_auth: ClientAuth | None = None,
        client_limiter: ClientRateLimiter | None = None,
    ) -> None:
        self.default_upstream = default_upstream
        self.blocklist = blocklist if blocklist is not None else Blocklist()
        self.client_auth = client_auth
        self.client_limiter = client_limiter

    def check(self, request: DistributionRequest, client: str | None, headers: Mapping[str, str]) -> None:
        """Raise the OCIError that refuses this request, or return."""
        if self.client_limiter is not None:
            retry_after = self.client_limiter.check(client or "unknown")
            if retry_after:
                raise OCIError(
                    ErrorCode.TOOMANYREQUESTS,
                    f"rate limit of {self.client_limiter.rate:g} requests/s exceeded; retry in {retry_after}s",
                    headers={"Retry-After": str(retry_after)},
                )
        if self.client_auth is not None:
            self.client_auth.check(headers)
        if request.kind != "base" and self.blocklist:
            self.check_subject(self.subject(request))

    def check_subject(self, subject: Subject) -> None:
        rule = self.blocklist.match(subject)
        if rule is not None:
            metrics.blocked_requests.add(1, {"upstream": subject.upstream or "", "rule": rule.id})
            raise OCIError(ErrorCode.DENIED, rule.reason, detail={"rule": rule.id})

    def subject(self, request: DistributionRequest) -> Subject:
        tag = request.reference if isinstance(request.reference, str) else None
        return Subject(
            upstream=self.upstream_name(request.registry),
            repository=request.repository,
            tag=tag,
            digest=str(request.digest) if request.digest is not None else None,
        )

    def upstream_name(self, registry: str | None) -> str:
        if registry is None:
            return self.default_upstream
        return "docker.io" if registry in DOCKER_HUB_HOSTS else registry
