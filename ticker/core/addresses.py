"""Which network addresses an outgoing request may reach (SSRF protection). Pure.

A webhook URL names a host; what matters is where the connection goes. So the sender
resolves the name, checks **every** address it resolves to here, and connects to one of
the checked addresses itself (never resolving again): a name that resolves to an internal
address, or that changes between the check and the connection, reaches nothing.

Refused unless allowed: loopback, private (RFC 1918, unique local), link-local (including
the cloud metadata address 169.254.169.254 and fe80::/10), carrier-grade NAT, "this
network", multicast, reserved and unspecified addresses, the IPv6 forms that embed an IPv4
address (mapped, 6to4, Teredo, NAT64), documentation and benchmarking ranges. An operator
allows hosts or networks with `TICKER_WEBHOOK_ALLOW` (e.g. `127.0.0.1`, `10.2.0.0/16`,
`hooks.internal`): an allowed *name* is allowed whatever it resolves to; an allowed network
allows the addresses in it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from ticker.core.errors import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED: Final[tuple[Network, ...]] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
    "2001::/32", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8",
))


@dataclass(frozen=True, slots=True)
class Allowed:
    """What an operator allowed: host names (lower case) and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = field(default=())

    def host(self, name: str) -> bool:
        return name.lower().rstrip(".") in self.hosts

    def address(self, ip: Address) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)

    def permits(self, host: str) -> bool:
        """Whether `host` (a name or an address literal) was allowed by name or network."""
        try:
            return self.address(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            return self.host(host)


def parse_allowed(spec: str, setting: str = "TICKER_WEBHOOK_ALLOW") -> Allowed:
    """`127.0.0.1, 10.0.0.0/8, hooks.internal` -> Allowed; ValidationError naming `setting`."""
    hosts: set[str] = set()
    networks: list[Network] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        if not name.replace("-", "").replace(".", "").isalnum() or not name.isascii():
            raise ValidationError(f"{entry!r} is neither an address, a network nor a host "
                                  "name", field=setting)
        hosts.add(name)
    return Allowed(frozenset(hosts), tuple(networks))


def refused(ip: Address) -> bool:
    """Whether `ip` is in a range an outgoing request must not reach by default."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return True  # ::ffff:a.b.c.d reaches a.b.c.d: refused whatever a.b.c.d is
    return any(ip.version == n.version and ip in n for n in BLOCKED) or not ip.is_global


def check_destination(host: str, addresses: Iterable[str], allowed: Allowed) -> list[str]:
    """The addresses `host` resolved to, if every one may be reached; ValidationError (field
    `url`) naming the first that may not. An allowed host name passes whatever it resolved
    to; otherwise each address must be public or inside an allowed network."""
    found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not found:
        raise ValidationError(f"{host} does not resolve to any address", field="url")
    if allowed.host(host):
        return [str(ip) for ip in found]
    for ip in found:
        if refused(ip) and not allowed.address(ip):
            raise ValidationError(
                f"{host} resolves to {ip}, an internal address; an operator can allow it "
                "with TICKER_WEBHOOK_ALLOW", field="url")
    return [str(ip) for ip in found]
