"""A network namespace joined to the root namespace by one veth pair, with the namespace's egress
shaped by `tc tbf`: a server started inside it (ip netns exec) reaches every client in the root
namespace through the shaped link only.

Both ends get private addresses on a /30 of our own (10.200.x.0/30 by default) that routes nowhere
else, so nothing leaves the machine; the pair and the namespace are deleted on exit, also after an
error (use it as a context manager).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class ShapedNamespace:
    """`ip netns` + veth + `tc qdisc add dev <ns side> root tbf rate RATE burst BURST latency LATENCY`."""

    tag: str = field(default_factory=lambda: f"p{os.getpid()}")
    rate: str = "800mbit"
    burst: str = "1mb"
    latency: str = "50ms"
    subnet_base: str = "10.200.0.0"
    created: bool = False
    host_addr: str = ""
    ns_addr: str = ""

    @property
    def name(self) -> str:
        return f"rmbench-{self.tag}"

    @property
    def host_if(self) -> str:
        return f"rmh{self.tag}"[:15]

    @property
    def ns_if(self) -> str:
        return f"rmn{self.tag}"[:15]

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace (ip netns exec replaces itself with the command)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def create(self) -> ShapedNamespace:
        subnet = self._free_subnet()
        host, ns = list(subnet.hosts())[:2]
        self.host_addr, self.ns_addr = str(host), str(ns)
        self.created = True  # from here on, delete() has something to undo
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{host}/{subnet.prefixlen}", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        inside = ["ip", "netns", "exec", self.name]
        _run(*inside, "ip", "addr", "add", f"{ns}/{subnet.prefixlen}", "dev", self.ns_if)
        _run(*inside, "ip", "link", "set", self.ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(
            *inside,
            "tc",
            "qdisc",
            "add",
            "dev",
            self.ns_if,
            "root",
            "tbf",
            "rate",
            self.rate,
            "burst",
            self.burst,
            "latency",
            self.latency,
        )
        return self

    def qdisc_stats(self) -> str:
        """`tc -s qdisc show` of the shaped device: bytes sent, drops, overlimits."""
        return _run("ip", "netns", "exec", self.name, "tc", "-s", "qdisc", "show", "dev", self.ns_if)

    def delete(self) -> None:
        """Idempotent. Deleting the namespace destroys its veth end, its qdisc and the peer end."""
        if not self.created:
            return
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        self.created = False

    def _free_subnet(self) -> ipaddress.IPv4Network:
        """The first /30 from subnet_base that no route on this machine mentions yet."""
        routes = _run("ip", "-4", "route", "show", "table", "all")
        taken = [
            ipaddress.ip_network(word, strict=False)
            for line in routes.splitlines()
            for word in line.split()[:1]
            if word[0].isdigit()
        ]
        base = ipaddress.ip_network(f"{self.subnet_base}/24", strict=False)
        for subnet in base.subnets(new_prefix=30):
            if not any(subnet.overlaps(other) for other in taken):
                return subnet
        raise RuntimeError(f"no free /30 left in {base}")

    def __enter__(self) -> ShapedNamespace:
        try:
            return self.create()
        except BaseException:
            self.delete()
            raise

    def __exit__(self, *exc: object) -> None:
        self.delete()


def _ip(*args: str) -> str:
    return _run("ip", *args)


def _run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
