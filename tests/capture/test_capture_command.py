"""`pymesh iptables`: --dry-run output against golden files, flag and environment parsing, errors.

Regenerate the golden files after an intended change with PYMESH_UPDATE_GOLDEN=1, then review
the diff: `PYMESH_UPDATE_GOLDEN=1 pytest tests/capture -k golden`.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from capture_helpers import pymesh
from pymesh.capture import command
from pymesh.capture.settings import CaptureSettings

GOLDEN = Path(__file__).parent / "golden"

# One case per flag (and a few combinations that change the shape of the output).
CASES = {
    "default": [],
    "proxy-port": ["-p", "16001"],
    "inbound-capture-port": ["-z", "16006"],
    "proxy-uid": ["-u", "2000"],
    "proxy-gid": ["-g", "3000"],
    "mode-tproxy": ["-m", "TPROXY"],
    "mode-tproxy-inbound-ports": ["-m", "tproxy", "-b", "8080,9090"],
    "tproxy-mark-route-table": ["-m", "TPROXY", "-t", "1400", "-r", "140"],
    "outbound-ip-ranges-include": ["-i", "10.0.0.0/8,172.16.0.0/12"],
    "outbound-ip-ranges-include-none": ["-i", ""],
    "outbound-ip-ranges-include-loopback": ["-i", "127.0.0.0/8,10.0.0.0/8"],
    "outbound-ip-ranges-exclude": ["-x", "10.96.0.0/12,169.254.169.254/32"],
    "inbound-ports-include": ["-b", "8080,9090"],
    "inbound-ports-include-none": ["-b", ""],
    "inbound-ports-exclude": ["-d", "22,8443"],
    "outbound-ports-include": ["-i", "", "-q", "3306,5432"],
    "outbound-ports-exclude": ["-o", "25,6379"],
    "ipv6": ["-6"],
    "ipv6-ip-ranges": ["--ipv6", "-i", "10.0.0.0/8,fd00::/8", "-x", "10.1.0.0/16,fd00:1::/64"],
    "ipv6-tproxy": ["-6", "-m", "TPROXY"],
}


@pytest.fixture(autouse=True)
def no_pymesh_env(monkeypatch):
    for option in command.OPTIONS:
        monkeypatch.delenv(option.env, raising=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_matches_golden(case, capsys):
    assert pymesh(["iptables", "--dry-run", *CASES[case]]) == 0
    out = capsys.readouterr().out
    path = GOLDEN / f"{case}.txt"
    if os.environ.get("PYMESH_UPDATE_GOLDEN") == "1":
        path.write_text(out)
    assert path.exists(), f"no golden file {path.name}; create it with PYMESH_UPDATE_GOLDEN=1"
    assert out == path.read_text(), f"dry-run output differs from {path.name} (PYMESH_UPDATE_GOLDEN=1 to accept)"


def test_every_golden_file_has_a_case():
    assert sorted(path.stem for path in GOLDEN.glob("*.txt")) == sorted(CASES)


def test_dry_run_is_deterministic(capsys):
    pymesh(["iptables", "-n", "-6", "-m", "TPROXY", "-x", "10.0.0.0/8,fd00::/8", "-d", "22"])
    first = capsys.readouterr().out
    pymesh(["iptables", "-n", "-6", "-m", "TPROXY", "-x", "10.0.0.0/8,fd00::/8", "-d", "22"])
    assert capsys.readouterr().out == first


def test_environment_variables_configure_like_flags(monkeypatch, capsys):
    pymesh(["iptables", "-n", "-p", "16001", "-b", "8080", "-x", "10.0.0.0/8", "-6"])
    from_flags = capsys.readouterr().out
    monkeypatch.setenv("PYMESH_PROXY_PORT", "16001")
    monkeypatch.setenv("PYMESH_INBOUND_PORTS_INCLUDE", "8080")
    monkeypatch.setenv("PYMESH_OUTBOUND_IP_RANGES_EXCLUDE", "10.0.0.0/8")
    monkeypatch.setenv("PYMESH_IPV6", "true")
    pymesh(["iptables", "-n"])
    assert capsys.readouterr().out == from_flags


def test_a_flag_wins_over_its_variable(monkeypatch, capsys):
    monkeypatch.setenv("PYMESH_PROXY_PORT", "not-a-port")
    assert pymesh(["iptables", "-n", "-p", "16001"]) == 0
    assert "--to-ports 16001" in capsys.readouterr().out


def test_a_set_but_empty_variable_means_empty(monkeypatch, capsys):
    monkeypatch.setenv("PYMESH_INBOUND_PORTS_INCLUDE", "")
    pymesh(["iptables", "-n"])
    assert "PREROUTING" not in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["-p", "0"], "-p/--proxy-port: '0' is not a port (1-65535)"),
    (["-p", "65536"], "-p/--proxy-port: '65536' is not a port"),
    (["-z", "http"], "-z/--inbound-capture-port: 'http' is not a port"),
    (["--proxy-uid=-5"], "-u/--proxy-uid: '-5' is negative"),
    (["-g", "x"], "-g/--proxy-gid: 'x' is not a number"),
    (["-m", "NAT"], "-m/--inbound-interception-mode: 'NAT' is not a mode; use REDIRECT or TPROXY"),
    (["-i", "10.0.0.0/33"], "-i/--outbound-ip-ranges-include: '10.0.0.0/33' is not a CIDR"),
    (["-i", "10.0.0.0/8,example.com"], "'example.com' is not a CIDR"),
    (["-x", "*"], "-x/--outbound-ip-ranges-exclude: '*' is not allowed here"),
    (["-x", "fd00::/8"], "fd00::/8 is IPv6 but IPv6 capture is off (--ipv6)"),
    (["-b", "80,eighty"], "-b/--inbound-ports-include: 'eighty' is not a port"),
    (["-b", "8080,15006"], "-b/--inbound-ports-include (PYMESH_INBOUND_PORTS_INCLUDE): port 15006 is the proxy's own"),
    (["-b", "15090"], "port 15090 is the proxy's own and is never captured"),
    (["-p", "16001", "-b", "16001"], "port 16001 is the proxy's own"),
    (["-d", "*"], "-d/--inbound-ports-exclude: '*' is not allowed here"),
    (["-q", "99999"], "-q/--outbound-ports-include: '99999' is not a port"),
    (["-o", "1-2"], "-o/--outbound-ports-exclude: '1-2' is not a port"),
    (["-t", "1338"], "-t/--tproxy-mark (PYMESH_TPROXY_MARK): 1338 is the outbound mark"),
    (["-t", "0"], "-t/--tproxy-mark (PYMESH_TPROXY_MARK): 0 is not a mark"),
    (["-r", "254"], "-r/--tproxy-route-table (PYMESH_TPROXY_ROUTE_TABLE): 254 is a system routing table"),
])
def test_a_bad_setting_is_refused_with_exit_2(argv, message, capsys):
    assert pymesh(["iptables", "--dry-run", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pymesh iptables: error: ")
    assert message in captured.err


@pytest.mark.parametrize("variable, value, message", [
    ("PYMESH_PROXY_PORT", "abc", "PYMESH_PROXY_PORT: 'abc' is not a port"),
    ("PYMESH_IPV6", "maybe", "PYMESH_IPV6: 'maybe' is not a boolean"),
    ("PYMESH_OUTBOUND_IP_RANGES_INCLUDE", "10.0.0.0/40", "PYMESH_OUTBOUND_IP_RANGES_INCLUDE: '10.0.0.0/40'"),
])
def test_a_bad_variable_is_named(variable, value, message, monkeypatch, capsys):
    monkeypatch.setenv(variable, value)
    assert pymesh(["iptables", "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_dry_run_does_not_go_with_clean(capsys):
    assert pymesh(["iptables", "clean", "--dry-run"]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_unknown_flag_and_action_exit_2(capsys):
    for argv in (["iptables", "-k", "eth1"], ["iptables", "flush"]):
        with pytest.raises(SystemExit) as exit_info:
            pymesh(argv)
        assert exit_info.value.code == 2


def test_help_names_every_variable(capsys):
    with pytest.raises(SystemExit):
        pymesh(["iptables", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for option in command.OPTIONS:
        assert option.env in help_text
        assert all(flag in help_text for flag in option.flags)


def test_options_cover_every_setting():
    assert sorted(o.field for o in command.OPTIONS) == sorted(f.name for f in fields(CaptureSettings))
