"""Rule generation and re-apply planning: pure functions, no iptables needed."""

from __future__ import annotations

import ipaddress

import pytest

from pymesh.capture.rules import generate, plan, render, tproxy_routes
from pymesh.capture.settings import CaptureConfigError, CaptureSettings


def nets(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def rules(settings: CaptureSettings, family: int = 4, table: str = "nat") -> list[str]:
    ruleset = next(r for r in generate(settings) if r.family == family)
    return list(next(t for t in ruleset.tables if t.name == table).rules)


def tables(settings: CaptureSettings, family: int = 4) -> list[str]:
    return [t.name for t in next(r for r in generate(settings) if r.family == family).tables]


def test_outbound_order_excludes_before_includes():
    out = [r for r in rules(CaptureSettings(
        outbound_ip_ranges_exclude=nets("10.1.0.0/16"), outbound_ports_include=(3306,),
        outbound_ports_exclude=(25,), outbound_ip_ranges_include=nets("10.0.0.0/8"),
    )) if r.startswith("-A PYMESH_OUTPUT")]
    assert out.index("-A PYMESH_OUTPUT -p tcp --dport 25 -j RETURN") == 0  # before anything else
    proxy_return = out.index("-A PYMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN")
    exclude = out.index("-A PYMESH_OUTPUT -d 10.1.0.0/16 -j RETURN")
    port = out.index("-A PYMESH_OUTPUT -p tcp --dport 3306 -j PYMESH_REDIRECT")
    include = out.index("-A PYMESH_OUTPUT -d 10.0.0.0/8 -j PYMESH_REDIRECT")
    assert proxy_return < exclude < port < include
    assert out[-1] == "-A PYMESH_OUTPUT -j RETURN"


def test_proxy_traffic_returns_before_any_redirect():
    out = rules(CaptureSettings(proxy_uid=2000, proxy_gid=3000))
    first_redirect = min(i for i, r in enumerate(out) if r.endswith("-j PYMESH_REDIRECT") and "OUTPUT" in r)
    assert out.index("-A PYMESH_OUTPUT -m owner --uid-owner 2000 -j RETURN") < first_redirect
    assert out.index("-A PYMESH_OUTPUT -m owner --gid-owner 3000 -j RETURN") < first_redirect
    # the proxy calling its own pod address over lo goes back through inbound capture
    assert "-A PYMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 2000 -j PYMESH_IN_REDIRECT" in out


def test_reserved_ports_never_captured_inbound_and_deduplicated():
    out = rules(CaptureSettings(proxy_port=15020, inbound_ports_exclude=(15021, 22)))
    returns = [r.split("--dport ")[1].split()[0] for r in out if "--dport" in r and r.endswith("RETURN")]
    assert returns == ["15000", "15006", "15020", "15021", "15090", "22"]


def test_inbound_port_list_captures_only_those_ports():
    out = [r for r in rules(CaptureSettings(inbound_ports_include=(8080, 9090))) if "PYMESH_INBOUND" in r]
    assert out == [
        "-A PREROUTING -p tcp -j PYMESH_INBOUND",
        "-A PYMESH_INBOUND -p tcp --dport 8080 -j PYMESH_IN_REDIRECT",
        "-A PYMESH_INBOUND -p tcp --dport 9090 -j PYMESH_IN_REDIRECT",
    ]


def test_no_inbound_capture_means_no_inbound_chains_and_no_loopback_redirect():
    settings = CaptureSettings(inbound_ports_include=(), mode="TPROXY")
    text = render(settings)
    assert "PREROUTING" not in text and "PYMESH_IN_REDIRECT" not in text and "*mangle" not in text
    assert tables(settings) == ["nat"]
    assert not settings.uses_tproxy


def test_no_outbound_capture_still_keeps_proxy_loopback_rules():
    out = rules(CaptureSettings(outbound_ip_ranges_include=()))
    assert not any(r.endswith("-j PYMESH_REDIRECT") for r in out)
    assert "-A PYMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j PYMESH_IN_REDIRECT" in out


def test_loopback_in_include_list_keeps_app_loopback_capture():
    with_loopback = rules(CaptureSettings(outbound_ip_ranges_include=nets("127.0.0.0/8")))
    without = rules(CaptureSettings(outbound_ip_ranges_include=nets("10.0.0.0/8")))
    rule = "-A PYMESH_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN"
    assert rule in without and rule not in with_loopback


def test_ip_ranges_go_to_their_own_family():
    settings = CaptureSettings(ipv6=True, outbound_ip_ranges_include=nets("fd00::/8"),
                               outbound_ip_ranges_exclude=nets("10.0.0.0/8", "fd00:1::/64"))
    v4, v6 = "\n".join(rules(settings, 4)), "\n".join(rules(settings, 6))
    assert "10.0.0.0/8" in v4 and "fd00" not in v4
    assert "fd00::/8 -j PYMESH_REDIRECT" in v6 and "fd00:1::/64 -j RETURN" in v6 and "10.0.0.0" not in v6
    assert "127.0.0.1" not in v6 and "::1/128" in v6 and "::6/128" in v6
    # v4 has no include of its family: nothing is redirected by address there
    assert not any(r.endswith("-j PYMESH_REDIRECT") for r in rules(settings, 4))


def test_tproxy_uses_mangle_and_only_pymesh_chains_hold_rules():
    settings = CaptureSettings(mode="TPROXY", ipv6=True)
    for ruleset in generate(settings):
        assert [t.name for t in ruleset.tables] == ["nat", "mangle"]
        mangle = ruleset.tables[1]
        assert mangle.chains == ("PYMESH_DIVERT", "PYMESH_TPROXY", "PYMESH_INBOUND", "PYMESH_OUTPUT")
        for table in ruleset.tables:
            for rule in table.rules:
                chain, target = rule.split()[1], rule.split(" -j ")[1].split()[0]
                # in a built-in chain, pymesh only ever adds jumps into its own chains
                assert chain.startswith("PYMESH_") or target.startswith("PYMESH_"), rule
    assert "-A PYMESH_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006" \
        in rules(settings, 4, "mangle")


def test_tproxy_routes_cover_each_family():
    commands = [" ".join(e.command("add")) for e in tproxy_routes(CaptureSettings(ipv6=True, tproxy_mark=7))]
    assert commands == [
        "ip -4 rule add fwmark 7 lookup 133",
        "ip -4 route add local default dev lo table 133",
        "ip -6 rule add fwmark 7 lookup 133",
        "ip -6 route add local default dev lo table 133",
    ]


def test_render_is_plan_from_nothing():
    for ruleset in generate(CaptureSettings(mode="TPROXY", ipv6=True)):
        assert ruleset.render() == plan("", ruleset)


SAVED = """# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [10:600]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:APP - [0:0]
:PYMESH_INBOUND - [0:0]
:PYMESH_OLD - [0:0]
-A PREROUTING -p tcp -j PYMESH_INBOUND
-A PREROUTING -p tcp -m comment --comment "keep me" -j APP
-A OUTPUT -p tcp -j PYMESH_OLD
-A APP -g PYMESH_OLD
-A PYMESH_OLD -j PYMESH_INBOUND
COMMIT
"""


def test_plan_replaces_pymesh_rules_and_leaves_the_rest():
    wanted = generate(CaptureSettings(inbound_ports_include=(8080,)))[0]
    text = plan(SAVED, wanted)
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines.count("COMMIT") == 1  # filter has nothing of pymesh
    assert "-D PREROUTING -p tcp -j PYMESH_INBOUND" in lines
    assert "-D OUTPUT -p tcp -j PYMESH_OLD" in lines
    assert "-D APP -g PYMESH_OLD" in lines
    assert ":PYMESH_OLD - [0:0]" in lines and "-X PYMESH_OLD" in lines  # flushed, then deleted
    assert not any("keep me" in line or "ACCEPT" in line for line in lines)
    # deletions come before the new rules, and the new rules are all there
    assert lines.index("-X PYMESH_OLD") < lines.index(wanted.tables[0].rules[0])
    assert all(rule in lines for rule in wanted.tables[0].rules)


def test_plan_for_clean():
    lines = plan(SAVED, None).splitlines()
    assert lines == [
        "*nat", ":PYMESH_INBOUND - [0:0]", ":PYMESH_OLD - [0:0]",
        "-D PREROUTING -p tcp -j PYMESH_INBOUND", "-D OUTPUT -p tcp -j PYMESH_OLD", "-D APP -g PYMESH_OLD",
        "-X PYMESH_INBOUND", "-X PYMESH_OLD", "COMMIT",
    ]
    assert plan("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", None) == ""
    assert plan("", None) == ""


@pytest.mark.parametrize("kwargs, field", [
    ({"proxy_port": 0}, "proxy_port"),
    ({"proxy_port": True}, "proxy_port"),
    ({"proxy_uid": -1}, "proxy_uid"),
    ({"mode": "redirect"}, "mode"),
    ({"inbound_ports_include": [80]}, "inbound_ports_include"),
    ({"inbound_ports_include": (15001,)}, "inbound_ports_include"),
    ({"outbound_ip_ranges_exclude": "*"}, "outbound_ip_ranges_exclude"),
    ({"outbound_ip_ranges_include": ("10.0.0.0/8",)}, "outbound_ip_ranges_include"),
    ({"outbound_ip_ranges_include": nets("fd00::/8")}, "outbound_ip_ranges_include"),
    ({"ipv6": "yes"}, "ipv6"),
    ({"tproxy_mark": 1338}, "tproxy_mark"),
    ({"tproxy_route_table": 255}, "tproxy_route_table"),
])
def test_settings_refuse_bad_values(kwargs, field):
    with pytest.raises(CaptureConfigError) as error:
        CaptureSettings(**kwargs)
    assert error.value.field == field
