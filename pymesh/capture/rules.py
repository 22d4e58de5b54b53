"""Capture rules as iptables-restore text: a pure function of CaptureSettings.

Modelled on Istio's istio-iptables output (tools/istio-iptables/pkg/capture/run.go), with the
ISTIO_ chains renamed PYMESH_. One difference: every rule pymesh puts into a built-in chain is a jump
to one of its own chains (TPROXY's mangle OUTPUT rules live in mangle PYMESH_OUTPUT), so the rules
can be removed exactly without knowing the settings they were made with.

The text declares pymesh's chains (`:CHAIN - [0:0]` creates or flushes one) and is meant for
`iptables-restore --noflush`, which leaves every other chain alone. `plan` turns what is there
(iptables-save text) and what is wanted into one such input, so re-applying replaces pymesh's rules
in a single transaction per table and removing them deletes exactly what pymesh added.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymesh.capture.settings import ALL, OUTBOUND_MARK, TPROXY, CaptureSettings

CHAIN_PREFIX = "PYMESH_"
INBOUND = "PYMESH_INBOUND"
REDIRECT = "PYMESH_REDIRECT"
IN_REDIRECT = "PYMESH_IN_REDIRECT"
OUTPUT = "PYMESH_OUTPUT"
DIVERT = "PYMESH_DIVERT"
TPROXY_CHAIN = "PYMESH_TPROXY"

LOOPBACK = {4: "127.0.0.1/32", 6: "::1/128"}
# Source address the proxy binds when it forwards inbound traffic to the app (Istio's 127.0.0.6),
# so that connection is told apart from the app's own traffic and not captured again.
INBOUND_PASSTHROUGH_SOURCE = {4: "127.0.0.6/32", 6: "::6/128"}

RESTORE_COMMAND = {4: "iptables-restore", 6: "ip6tables-restore"}


@dataclass(frozen=True)
class TableRules:
    """pymesh's chains in one table, in declaration order, and its `-A` rule lines."""

    name: str
    chains: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class RuleSet:
    """Everything for one IP version: the tables for its *tables-restore command."""

    family: int
    tables: tuple[TableRules, ...]

    @property
    def restore_command(self) -> str:
        return RESTORE_COMMAND[self.family]

    def render(self) -> str:
        """The iptables-restore text for a namespace with no pymesh rules yet."""
        return plan("", self)


@dataclass(frozen=True)
class RouteEntry:
    """One `ip rule` or `ip route` entry: added with `add`, found with `show`, removed with `del`."""

    family: int
    kind: str  # "rule" or "route"
    spec: tuple[str, ...]  # for add and del
    selector: tuple[str, ...]  # for show: prints something when the entry exists

    def command(self, verb: str) -> tuple[str, ...]:
        return ("ip", f"-{self.family}", self.kind, verb, *(self.selector if verb == "show" else self.spec))


@dataclass
class _Table:
    name: str
    chains: dict[str, None] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)

    def add(self, chain: str, *parts: object) -> None:
        """Append `-A chain parts...`, declaring pymesh chains on first use (in that order)."""
        rule = " ".join(["-A", chain, *(str(p) for p in parts if p != "")])
        for word in rule.split():
            if word.startswith(CHAIN_PREFIX):
                self.chains.setdefault(word)
        self.rules.append(rule)

    def freeze(self) -> TableRules:
        return TableRules(self.name, tuple(self.chains), tuple(self.rules))


def generate(settings: CaptureSettings) -> tuple[RuleSet, ...]:
    """One RuleSet per IP version in use: IPv4 always, IPv6 when settings.ipv6."""
    return tuple(_ruleset(settings, family) for family in settings.families)


def tproxy_routes(settings: CaptureSettings) -> tuple[RouteEntry, ...]:
    """The policy routing TPROXY needs: packets with the TPROXY mark are delivered locally via lo.

    Depends only on the mark, the table and the IP versions, so `clean` finds the entries whatever
    mode they were added in; apply adds them when settings.uses_tproxy and removes them otherwise.
    """
    mark, table = str(settings.tproxy_mark), str(settings.tproxy_route_table)
    entries = []
    for family in settings.families:
        rule = ("fwmark", mark, "lookup", table)
        entries.append(RouteEntry(family, "rule", rule, rule))
        route = ("local", "default", "dev", "lo", "table", table)
        selector = ("table", table, "type", "local", "exact", "default", "dev", "lo")
        entries.append(RouteEntry(family, "route", route, selector))
    return tuple(entries)


def render(settings: CaptureSettings) -> str:
    """The dry-run text: each IP version's restore input under a comment naming its command."""
    parts = []
    for ruleset in generate(settings):
        parts.append(f"# {ruleset.restore_command} --noflush\n{ruleset.render()}")
    if settings.uses_tproxy:
        commands = (" ".join(entry.command("add")) for entry in tproxy_routes(settings))
        parts.append("# then the TPROXY routing\n" + "".join(f"# {command}\n" for command in commands))
    return "".join(parts)


def plan(saved: str, desired: RuleSet | None) -> str:
    """The `*tables-restore --noflush` input that turns `saved` into `saved` with pymesh's rules
    replaced by `desired` (None: removed); empty when there is nothing to do.

    Per table: declare (create or flush) the wanted chains and any stale pymesh chain, delete the
    jumps into pymesh chains found in other chains, delete the stale chains, add the wanted rules.
    """
    current = _parse_save(saved)
    wanted = {table.name: table for table in desired.tables} if desired else {}
    lines: list[str] = []
    for name in dict.fromkeys([*wanted, *current]):
        existing = current.get(name, [])
        ours = [line[1:].split()[0] for line in existing if line.startswith(":" + CHAIN_PREFIX)]
        jumps = [line for line in existing if _jumps_into_pymesh(line)]
        table = wanted.get(name)
        chains = table.chains if table else ()
        stale = [chain for chain in ours if chain not in chains]
        if not (table or stale or jumps):
            continue
        lines.append(f"*{name}")
        lines += [f":{chain} - [0:0]" for chain in (*chains, *stale)]
        lines += ["-D" + line[2:] for line in jumps]
        lines += [f"-X {chain}" for chain in stale]
        lines += table.rules if table else ()
        lines.append("COMMIT")
    return "".join(line + "\n" for line in lines)


def _parse_save(text: str) -> dict[str, list[str]]:
    """iptables-save text -> table name -> its chain (`:`) and rule (`-A`) lines."""
    tables: dict[str, list[str]] = {}
    lines = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            lines = tables.setdefault(line[1:], [])
        elif line == "COMMIT":
            lines = None
        elif lines is not None and line[:1] in (":", "-"):
            lines.append(line)
    return tables


def _jumps_into_pymesh(line: str) -> bool:
    """Is this a rule outside pymesh's chains that jumps (or goes) into one of them?"""
    words = shlex.split(line)
    if words[:1] != ["-A"] or len(words) < 2 or words[1].startswith(CHAIN_PREFIX):
        return False
    return any(a in ("-j", "-g") and b.startswith(CHAIN_PREFIX) for a, b in zip(words, words[1:]))


def _ruleset(s: CaptureSettings, family: int) -> RuleSet:
    nat = _Table("nat")
    nat.add(REDIRECT, "-p tcp -j REDIRECT --to-ports", s.proxy_port)
    tables = [nat]
    if s.captures_inbound:
        nat.add(IN_REDIRECT, "-p tcp -j REDIRECT --to-ports", s.inbound_capture_port)
        if s.mode == TPROXY:
            mangle = _Table("mangle")
            _tproxy_inbound(mangle, s, family)
            _tproxy_output(mangle, s, family)
            tables.append(mangle)
        else:
            _inbound(nat, s, capture=[("-j", IN_REDIRECT)])
    _outbound(nat, s, family)
    return RuleSet(family, tuple(t.freeze() for t in tables))


def _inbound(t: _Table, s: CaptureSettings, capture: Sequence[tuple], head: Sequence[tuple] = ()) -> None:
    """PREROUTING -> PYMESH_INBOUND: skip the proxy's own and excluded ports, capture the rest.

    `head` is rules that come first in the chain; `capture` is the rule tails that take a packet
    to the proxy (one for REDIRECT, two for TPROXY).
    """
    t.add("PREROUTING", "-p tcp -j", INBOUND)
    for rule in head:
        t.add(INBOUND, *rule)
    if s.inbound_ports_include == ALL:
        for port in dict.fromkeys((*s.reserved_inbound_ports, *s.inbound_ports_exclude)):
            t.add(INBOUND, "-p tcp --dport", port, "-j RETURN")
        matches = [""]
    else:
        matches = [f"--dport {port}" for port in s.inbound_ports_include]
    for match in matches:
        for tail in capture:
            t.add(INBOUND, "-p tcp", match, *tail)


def _tproxy_inbound(t: _Table, s: CaptureSettings, family: int) -> None:
    mark = s.tproxy_mark
    t.add(DIVERT, "-j MARK --set-mark", mark)
    t.add(DIVERT, "-j ACCEPT")
    t.add(TPROXY_CHAIN, "!", "-d", LOOPBACK[family], "-p tcp -j TPROXY",
          f"--tproxy-mark {mark}/0xffffffff --on-port {s.inbound_capture_port}")
    # Istio's first PYMESH_INBOUND rules (its mangle PREROUTING save-mark rule moved in here):
    # keep the proxy's original-source mark on the connection and never divert it again,
    # leave the proxy's passthrough connections and the app's own loopback traffic alone.
    head = [
        ("-p tcp -m mark --mark", mark, "-j CONNMARK --save-mark"),
        ("-p tcp -m mark --mark", mark, "-j RETURN"),
        ("-p tcp -s", INBOUND_PASSTHROUGH_SOURCE[family], "-i lo -j RETURN"),
        ("-p tcp -i lo -m mark ! --mark", OUTBOUND_MARK, "-j RETURN"),
    ]
    capture = [("-m conntrack --ctstate RELATED,ESTABLISHED -j", DIVERT), ("-j", TPROXY_CHAIN)]
    _inbound(t, s, capture, head)


def _tproxy_output(t: _Table, s: CaptureSettings, family: int) -> None:
    """Mark the proxy's connections to its own pod address so they are told apart inbound."""
    t.add("OUTPUT", "-p tcp -j", OUTPUT)
    t.add(OUTPUT, "-p tcp -o lo -m mark --mark", s.tproxy_mark, "-j RETURN")
    for owner in (f"--uid-owner {s.proxy_uid}", f"--gid-owner {s.proxy_gid}"):
        t.add(OUTPUT, "!", "-d", LOOPBACK[family], "-p tcp -o lo -m owner", owner,
              "-j MARK --set-mark", OUTBOUND_MARK)
    t.add(OUTPUT, "-p tcp -m connmark --mark", s.tproxy_mark, "-j CONNMARK --restore-mark")


def _outbound(t: _Table, s: CaptureSettings, family: int) -> None:
    """OUTPUT -> PYMESH_OUTPUT: what the app sends goes to the proxy; what the proxy sends does not."""
    loopback = LOOPBACK[family]
    t.add("OUTPUT", "-p tcp -j", OUTPUT)
    for port in s.outbound_ports_exclude:
        t.add(OUTPUT, "-p tcp --dport", port, "-j RETURN")
    t.add(OUTPUT, "-o lo -s", INBOUND_PASSTHROUGH_SOURCE[family], "-j RETURN")
    include = s.outbound_ip_ranges_include
    include_loopback = include != ALL and any(n.is_loopback for n in include)
    for owner in (f"--uid-owner {s.proxy_uid}", f"--gid-owner {s.proxy_gid}"):
        if s.captures_inbound:
            # The proxy calling its own pod address (app -> service VIP -> proxy -> this pod)
            # leaves through lo: send it through inbound capture like any inbound call.
            t.add(OUTPUT, "-o lo ! -d", loopback, "-m owner", owner, "-j", IN_REDIRECT)
        if not include_loopback:
            # The app calling its own pod address over lo goes straight to itself.
            t.add(OUTPUT, "-o lo -m owner !", owner, "-j RETURN")
        # Everything else the proxy sends goes out as it is: no loop back into the proxy.
        t.add(OUTPUT, "-m owner", owner, "-j RETURN")
    t.add(OUTPUT, "-d", loopback, "-j RETURN")
    for network in s.outbound_ip_ranges_exclude:
        if network.version == family:
            t.add(OUTPUT, "-d", network, "-j RETURN")
    for port in s.outbound_ports_include:
        t.add(OUTPUT, "-p tcp --dport", port, "-j", REDIRECT)
    if include == ALL:
        t.add(OUTPUT, "-j", REDIRECT)
    elif include:
        for network in include:
            if network.version == family:
                t.add(OUTPUT, "-d", network, "-j", REDIRECT)
        t.add(OUTPUT, "-j RETURN")
