"""The policy gate every content request passes before any handler: rate limit (429), client
token (401), blocklist (403). Cheap when nothing is configured: three `None` checks.

`Policy.admit` is the part that needs no route knowledge (who is asking); `check_subject` is the
part that needs to know what is asked for. `registry_mirror.policy._asgi.PolicyGate` runs both in
front of every route, so a new route is gated without being told to be."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from registry_mirror.api import DOCKER_HUB_HOSTS, DistributionRequest, ErrorCode, OCIError, normalize_repository
from registry_mirror.policy import _metrics as metrics
from registry_mirror.policy._blocklist import Blocklist, Subject
from registry_mirror.policy._client_auth import ClientAuth
from registry_mirror.policy._ratelimit import ClientRateLimiter


class Policy:
    def __init__(
        self,
        *,
        default_upstream: str,
        blocklist: Blocklist | None = None,
        client_auth: ClientAuth | None = None,
        client_limiter: ClientRateLimiter | None = None,
        library_prefixed: Collection[str] = ("docker.io",),
    ) -> None:
        """`library_prefixed`: upstreams whose one-component names live under `library/`."""
        self.default_upstream = default_upstream
        self.blocklist = blocklist if blocklist is not None else Blocklist()
        self.client_auth = client_auth
        self.client_limiter = client_limiter
        self.library_prefixed = frozenset(library_prefixed)

    def admit(self, client: str | None, headers: Mapping[str, str]) -> None:
        """Rate limit, then client token: raise the OCIError that refuses this client, or return."""
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

    def check(self, request: DistributionRequest, client: str | None, headers: Mapping[str, str]) -> None:
        """Admission and blocklist for one distribution request."""
        self.admit(client, headers)
        self.check_request(request)

    def check_request(self, request: DistributionRequest) -> None:
        if request.kind != "base" and self.blocklist:
            self.check_subject(self.subject(request))

    def check_subject(self, subject: Subject) -> None:
        rule = self.blocklist.match(subject)
        if rule is not None:
            metrics.blocked_requests.add(1, {"upstream": subject.upstream or "", "rule": rule.id})
            raise OCIError(ErrorCode.DENIED, rule.reason, detail={"rule": rule.id})

    def subject(self, request: DistributionRequest) -> Subject:
        """The request in the terms rules match on, after normalisation: `alpine` on Docker Hub is
        `library/alpine`, so a rule for one name cannot be walked around with the other."""
        tag = request.reference if isinstance(request.reference, str) else None
        upstream = self.upstream_name(request.registry)
        return Subject(
            upstream=upstream,
            repository=self.repository_name(upstream, request.repository),
            tag=tag,
            digest=str(request.digest) if request.digest is not None else None,
            library_prefixed=self._library_prefixed(upstream),
        )

    def repository_name(self, upstream: str, repository: str) -> str:
        return normalize_repository(upstream, repository, self._library_prefixed(upstream))

    def _library_prefixed(self, upstream: str) -> bool:
        return upstream in self.library_prefixed or upstream in DOCKER_HUB_HOSTS

    def upstream_name(self, registry: str | None) -> str:
        if registry is None:
            return self.default_upstream
        return "docker.io" if registry in DOCKER_HUB_HOSTS else registry
