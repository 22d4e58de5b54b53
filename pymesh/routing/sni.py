"""TLS passthrough routing: which TCP route a connection takes from its ClientHello's SNI and
its destination address, as Envoy's filter chain match picks a chain.

Envoy's order is kept: the destination address first (the longest matching prefix among the
chains that name subnets, else the chains that name none), then, among those chains only, the
server name: exact, then the longest wildcard suffix ("*.b.example.com" before "*.example.com"),
then a chain with no server names. Nothing is retried with a less specific address, so a
connection that matches no chain gets None and the listener's fallback (its tcp route, the
passthrough cluster or a close). Built once per snapshot; `match` costs a dict lookup per label.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pymesh.routing.snapshot import TcpRoute

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SniChain:
    """One filter chain: TLS for these names (exact, "*.suffix"; none: any) to these
    destinations (CIDRs; none: any) takes `route`."""

    server_names: tuple[str, ...]
    destination_subnets: tuple[str, ...]
    route: TcpRoute
    source: str = ""  # "namespace/name" of the VirtualService, "" for a service's default chain


class ServerNames:
    """Server name -> value (a route, a gateway's TLS server), matched as Envoy's filter chain
    match does: exact, then the longest "*.suffix" wildcard, then the entry for any name ("*" or
    no names), which also takes a connection without SNI. The first entry naming a name keeps it."""

    __slots__ = ("exact", "wildcard", "any")

    def __init__(self) -> None:
        self.exact: dict[str, object] = {}
        self.wildcard: dict[str, object] = {}  # ".example.com" for "*.example.com"
        self.any: object | None = None

    def add(self, server_names: tuple[str, ...], value) -> None:
        names = [n.lower() for n in server_names if n != "*"]
        if len(names) < len(server_names) or not server_names:
            if self.any is None:
                self.any = value
        for name in names:
            if name.startswith("*."):
                self.wildcard.setdefault(name[1:], value)
            else:
                self.exact.setdefault(name, value)

    def match(self, server_name: str | None):
        """The value for a lower-cased SNI (None: the client sent none), or None."""
        if server_name is None:
            return self.any
        value = self.exact.get(server_name)
        if value is not None:
            return value
        if self.wildcard:
            dot = server_name.find(".")
            while dot >= 0:
                value = self.wildcard.get(server_name[dot:])
                if value is not None:
                    return value
                dot = server_name.find(".", dot + 1)
        return self.any


@dataclass(frozen=True)
class SniTable:
    chains: tuple[SniChain, ...]
    _by_network: tuple[tuple[Network, ServerNames], ...] = field(init=False, repr=False, compare=False)
    _anywhere: ServerNames = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups: dict[Network, ServerNames] = {}
        anywhere = ServerNames()
        for chain in self.chains:
            if not chain.destination_subnets:
                anywhere.add(chain.server_names, chain.route)
            for subnet in chain.destination_subnets:
                network = ipaddress.ip_network(subnet, strict=False)
                groups.setdefault(network, ServerNames()).add(chain.server_names, chain.route)
        ordered = tuple(sorted(groups.items(), key=lambda item: -item[0].prefixlen))  # most specific first
        object.__setattr__(self, "_by_network", ordered)
        object.__setattr__(self, "_anywhere", anywhere)

    def match(self, server_name: str | None, destination: str | None = None) -> TcpRoute | None:
        """The route for a connection with this SNI (lower-cased by the caller; None: no SNI or
        not TLS) to `destination` (an IP; None when the listener cannot know it)."""
        names = self._anywhere
        if destination is not None and self._by_network:
            try:
                address = ipaddress.ip_address(destination)
            except ValueError:
                address = None
            for network, group in self._by_network:
                if address is not None and address.version == network.version and address in network:
                    names = group
                    break
        return names.match(server_name)
