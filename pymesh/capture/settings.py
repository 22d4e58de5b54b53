"""Capture settings: the meaning of Istio's istio-iptables flags as one frozen, validated value.

Parsing (text from a flag or an environment variable) and validation live here, apart from rule
generation, so a bad value is refused with a message naming the setting before any rule is built.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, Union

ALL: Literal["*"] = "*"
"""Wildcard for inbound ports and outbound IP ranges: capture everything."""

REDIRECT = "REDIRECT"
TPROXY = "TPROXY"
MODES = (REDIRECT, TPROXY)

PROXY_OWN_PORTS = (15000, 15020, 15021, 15090)
"""Admin, agent, health and Prometheus ports of the proxy: never captured inbound."""

OUTBOUND_MARK = 1338
"""Mark TPROXY mode puts on the proxy's loopback connections to its own pod address (Istio's)."""

_RESERVED_ROUTE_TABLES = (0, 253, 254, 255)  # unspec, default, main, local

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Ports = Union[tuple[int, ...], Literal["*"]]
Networks = Union[tuple[Network, ...], Literal["*"]]


class CaptureConfigError(ValueError):
    """A capture setting is invalid; `field` names the CaptureSettings field it concerns."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CaptureSettings:
    """What to capture, with istio-iptables' defaults as a sidecar injector passes them.

    Flag letters of istio-iptables: proxy_port -p, inbound_capture_port -z, proxy_uid -u,
    proxy_gid -g, mode -m, outbound_ip_ranges_include -i, outbound_ip_ranges_exclude -x,
    inbound_ports_include -b, inbound_ports_exclude -d, outbound_ports_include -q,
    outbound_ports_exclude -o. An empty include (`()`) captures nothing in that direction.
    """

    proxy_port: int = 15001
    inbound_capture_port: int = 15006
    proxy_uid: int = 1337
    proxy_gid: int = 1337
    mode: str = REDIRECT
    outbound_ip_ranges_include: Networks = ALL
    outbound_ip_ranges_exclude: tuple[Network, ...] = ()
    inbound_ports_include: Ports = ALL
    inbound_ports_exclude: tuple[int, ...] = ()
    outbound_ports_include: tuple[int, ...] = ()
    outbound_ports_exclude: tuple[int, ...] = ()
    ipv6: bool = False
    tproxy_mark: int = 1337
    tproxy_route_table: int = 133

    def __post_init__(self) -> None:
        for name in ("proxy_port", "inbound_capture_port"):
            _check_port(name, getattr(self, name))
        for name in ("proxy_uid", "proxy_gid"):
            _check_int(name, getattr(self, name), 0, 2**32 - 2, "an id")
        if self.mode not in MODES:
            raise CaptureConfigError("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("inbound_ports_exclude", "outbound_ports_include", "outbound_ports_exclude"):
            _check_ports(name, getattr(self, name), wildcard=False)
        _check_ports("inbound_ports_include", self.inbound_ports_include, wildcard=True)
        if self.inbound_ports_include != ALL:
            for port in self.inbound_ports_include:
                if port in self.reserved_inbound_ports:
                    raise CaptureConfigError(
                        "inbound_ports_include", f"port {port} is the proxy's own and is never captured"
                    )
        _check_networks("outbound_ip_ranges_include", self.outbound_ip_ranges_include, True, self.ipv6)
        _check_networks("outbound_ip_ranges_exclude", self.outbound_ip_ranges_exclude, False, self.ipv6)
        if not isinstance(self.ipv6, bool):
            raise CaptureConfigError("ipv6", f"must be a bool, got {self.ipv6!r}")
        _check_int("tproxy_mark", self.tproxy_mark, 1, 2**32 - 1, "a mark")
        if self.tproxy_mark == OUTBOUND_MARK:
            raise CaptureConfigError("tproxy_mark", f"{OUTBOUND_MARK} is the outbound mark; pick another")
        _check_int("tproxy_route_table", self.tproxy_route_table, 1, 2**32 - 1, "a route table")
        if self.tproxy_route_table in _RESERVED_ROUTE_TABLES:
            raise CaptureConfigError(
                "tproxy_route_table", f"{self.tproxy_route_table} is a system routing table; pick another"
            )

    @property
    def reserved_inbound_ports(self) -> tuple[int, ...]:
        """The proxy's own ports, sorted: the capture ports and PROXY_OWN_PORTS."""
        return tuple(sorted({self.proxy_port, self.inbound_capture_port, *PROXY_OWN_PORTS}))

    @property
    def captures_inbound(self) -> bool:
        return self.inbound_ports_include != ()

    @property
    def uses_tproxy(self) -> bool:
        """Inbound capture by TPROXY, which needs the mangle rules and policy routing."""
        return self.mode == TPROXY and self.captures_inbound

    @property
    def families(self) -> tuple[int, ...]:
        """IP versions to write rules for."""
        return (4, 6) if self.ipv6 else (4,)


def _check_int(field: str, value: object, low: int, high: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CaptureConfigError(field, f"{value!r} is not {what} ({low}-{high})")


def _check_port(field: str, value: object) -> None:
    _check_int(field, value, 1, 65535, "a port")


def _check_ports(field: str, value: object, wildcard: bool) -> None:
    if wildcard and value == ALL:
        return
    if not isinstance(value, tuple):
        raise CaptureConfigError(field, f"must be a tuple of ports{' or ' + ALL if wildcard else ''}")
    for port in value:
        _check_port(field, port)


def _check_networks(field: str, value: object, wildcard: bool, ipv6: bool) -> None:
    if wildcard and value == ALL:
        return
    if not isinstance(value, tuple):
        raise CaptureConfigError(field, f"must be a tuple of networks{' or ' + ALL if wildcard else ''}")
    for network in value:
        if not isinstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            raise CaptureConfigError(field, f"{network!r} is not an ipaddress network")
        if network.version == 6 and not ipv6:
            raise CaptureConfigError(field, f"{network} is IPv6 but IPv6 capture is off (--ipv6)")


# Parsers from text, shared by flags and environment variables. They raise ValueError with a
# message that does not name the source; the caller adds the flag or variable name.


def parse_port(text: str) -> int:
    value = _parse_int(text, "a port")
    if not 1 <= value <= 65535:
        raise ValueError(f"{text.strip()!r} is not a port (1-65535)")
    return value


def parse_int(text: str) -> int:
    value = _parse_int(text, "a number")
    if value < 0:
        raise ValueError(f"{text.strip()!r} is negative")
    return value


def parse_ports(text: str) -> tuple[int, ...]:
    """Comma-separated ports; blanks between commas are ignored, duplicates dropped."""
    if text.strip() == ALL:
        raise ValueError(f"{ALL!r} is not allowed here")
    return tuple(dict.fromkeys(parse_port(item) for item in _items(text)))


def parse_ports_or_all(text: str) -> Ports:
    return ALL if text.strip() == ALL else parse_ports(text)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); host bits are cleared."""
    if text.strip() == ALL:
        raise ValueError(f"{ALL!r} is not allowed here")
    networks = []
    for item in _items(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR (like 10.0.0.0/8)") from None
    return tuple(dict.fromkeys(networks))


def parse_networks_or_all(text: str) -> Networks:
    return ALL if text.strip() == ALL else parse_networks(text)


def parse_mode(text: str) -> str:
    mode = text.strip().upper()
    if mode not in MODES:
        raise ValueError(f"{text!r} is not a mode; use {' or '.join(MODES)}")
    return mode


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not {what}") from None


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
