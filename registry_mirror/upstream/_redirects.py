"""Where an origin's redirect may send the mirror.

An origin answering 302 to the mirror's own admin listener got admin JSON cached as a manifest.
A redirect is followed only to a host that is not loopback, link-local (cloud metadata lives at
169.254.169.254), unspecified or multicast, unless the upstream itself is on loopback (a local
origin may redirect locally), and never to one of the mirror's own listening ports on a local
address. Host names are resolved once here; a name that resolves to a refused address is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from registry_mirror.telemetry import _metrics as metrics


class RedirectRefused(Exception):
    """The redirect target is not a host the mirror fetches from."""


@dataclass(frozen=True)
class RedirectPolicy:
    own: frozenset[tuple[str, int]] = frozenset()  # the mirror's listeners (main, admin, peer)

    @classmethod
    def for_listeners(cls, listeners: Iterable[tuple[str, int]]) -> RedirectPolicy:
        return cls(frozenset(listeners))

    async def check(self, upstream: URL, target: URL) -> None:
        """Return when following `upstream`'s redirect to `target` is allowed, else raise."""
        if target.scheme not in ("http", "https") or not target.host:
            raise self._refuse(target, "scheme")
        own_ports = {port for _, port in self.own}
        own_hosts = {host for host, _ in self.own}
        local_upstream = any(_is_local(a) for a in await _addresses(upstream.host or ""))
        for address in await _addresses(target.host):
            local = _is_local(address)
            if target.port in own_ports and (local or str(address) in own_hosts or target.host in own_hosts):
                raise self._refuse(target, "self")
            if address.is_link_local or address.is_multicast:
                raise self._refuse(target, "internal")  # metadata endpoints, even for a local origin
            if local and not local_upstream:
                raise self._refuse(target, "internal")

    @staticmethod
    def _refuse(target: URL, reason: str) -> RedirectRefused:
        metrics.redirects_refused.add(1, {"reason": reason})
        return RedirectRefused(f"redirect to {target.host}:{target.port} refused ({reason})")


def _is_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or address.is_unspecified or (mapped is not None and mapped.is_loopback))


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []  # unresolvable: the connection itself will fail
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
