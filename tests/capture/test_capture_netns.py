"""apply and clean against real iptables, inside throwaway network namespaces (tests/netns.py).

Every namespace starts with some unrelated rules (BASELINE) that pymesh must leave exactly as
they are. Failures are forced with stand-in commands put first on PATH.
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

from capture_helpers import normalized, pymesh
from pymesh.capture import command
from pymesh.capture.apply import CaptureError, apply, clean
from pymesh.capture.settings import CaptureSettings

BASELINE = {
    4: """*nat
:APP_NAT - [0:0]
-A PREROUTING -p tcp -m tcp --dport 9999 -j APP_NAT
-A OUTPUT -d 198.18.0.99/32 -j RETURN
-A APP_NAT -j RETURN
COMMIT
*mangle
-A PREROUTING -p udp -j MARK --set-xmark 0x7/0xffffffff
COMMIT
*filter
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
""",
    6: """*nat
-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN
COMMIT
*mangle
-A PREROUTING -p udp -j MARK --set-xmark 0x7/0xffffffff
COMMIT
""",
}
SAVE = {4: "iptables-save", 6: "ip6tables-save"}
RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}


def has_ip6tables() -> bool:
    return all(shutil.which(tool) for tool in ("ip6tables-save", "ip6tables-restore"))


def state(pod, families=(4, 6)) -> dict:
    """Everything apply/clean may touch: both families' rules and the TPROXY routing."""
    found = {family: normalized(pod.run(SAVE[family]).stdout) for family in families}
    for family in families:
        found[f"rule{family}"] = pod.run("ip", f"-{family}", "rule", "show").stdout
        routes = pod.run("ip", f"-{family}", "route", "show", "table", "all").stdout.splitlines()
        found[f"table{family}"] = [route for route in routes if "table 133" in route]
    return found


def make_pod(testbed, families=(4, 6)):
    pod = testbed("app")["app"]
    for family in families:
        pod.run(RESTORE[family], input=BASELINE[family])
    return pod


def fake_command(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def failing_ip6tables(directory: Path, message: str) -> None:
    """ip6tables that saves nothing and fails to apply (the rollback's plain restore succeeds)."""
    fake_command(directory, "ip6tables-save", "exit 0\n")
    fake_command(directory, "ip6tables-restore",
                 f'case " $* " in *" --noflush "*) echo "{message}" >&2; exit 2;; esac\n')


SETTINGS = {
    "default": CaptureSettings(),
    "ports-and-ranges": CaptureSettings(inbound_ports_include=(8080, 9090), outbound_ports_exclude=(25,)),
    "tproxy": CaptureSettings(mode="TPROXY"),
    "ipv6-tproxy": CaptureSettings(mode="TPROXY", ipv6=True),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_apply_twice_then_clean_leaves_the_namespace_as_it_was(name, testbed):
    settings = SETTINGS[name]
    if settings.ipv6 and not has_ip6tables():
        pytest.skip("needs ip6tables-save and ip6tables-restore")
    families = settings.families
    pod = make_pod(testbed, families)
    before = state(pod, families)

    apply(settings, netns=pod.netns)
    once = state(pod, families)
    apply(settings, netns=pod.netns)
    assert state(pod, families) == once  # exactly one copy

    for family in families:
        rules = once[family].splitlines()
        # one jump per table that has a PYMESH_OUTPUT (nat, and mangle with TPROXY)
        assert rules.count("-A OUTPUT -p tcp -j PYMESH_OUTPUT") == (2 if settings.uses_tproxy else 1)
        # the unrelated rules are all still there
        assert set(normalized(BASELINE[family]).splitlines()) - {"COMMIT"} <= set(rules) | {"*nat", "*mangle"}
        if settings.uses_tproxy:
            assert "fwmark 0x539 lookup 133" in once[f"rule{family}"]
            assert once[f"table{family}"]

    clean(settings, netns=pod.netns)
    assert state(pod, families) == before
    clean(settings, netns=pod.netns)  # nothing left to do: still fine
    assert state(pod, families) == before


def test_reapplying_other_settings_leaves_nothing_of_the_old_ones(testbed):
    bed = testbed("app", "fresh")
    for pod in bed.pods.values():
        pod.run("iptables-restore", input=BASELINE[4])
    final = CaptureSettings(inbound_ports_include=(8080,), proxy_port=16001)
    apply(CaptureSettings(mode="TPROXY", outbound_ports_include=(3306,)), netns=bed["app"].netns)
    apply(final, netns=bed["app"].netns)
    apply(final, netns=bed["fresh"].netns)
    assert state(bed["app"], (4,)) == state(bed["fresh"], (4,))


def test_failing_ipv6_step_puts_the_previous_rules_back(testbed, tmp_path, monkeypatch):
    pod = make_pod(testbed, (4,))
    apply(CaptureSettings(), netns=pod.netns)  # the previous state includes pymesh's own rules
    before = state(pod, (4,))
    failing_ip6tables(tmp_path, "ip6tables-restore: simulated failure")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin")

    with pytest.raises(CaptureError) as error:
        apply(CaptureSettings(ipv6=True, proxy_port=16001, mode="TPROXY"), netns=pod.netns)
    message = str(error.value)
    assert "`ip6tables-restore --noflush` failed (exit 2): ip6tables-restore: simulated failure" in message
    assert message.endswith("the previous rules were restored")
    assert state(pod, (4,)) == before


def test_restore_that_changed_rules_then_failed_is_undone(testbed, tmp_path, monkeypatch):
    pod = make_pod(testbed, (4,))
    before = state(pod, (4,))
    real = shutil.which("iptables-restore")
    fake_command(tmp_path, "iptables-restore", f"""{real} "$@" || exit $?
case " $* " in *" --noflush "*) echo "applied, then failed" >&2; exit 4;; esac
""")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin")
    with pytest.raises(CaptureError, match=r"`iptables-restore --noflush` failed \(exit 4\): applied, then failed"):
        apply(CaptureSettings(mode="TPROXY"), netns=pod.netns)
    assert state(pod, (4,)) == before


def test_rollback_in_an_empty_namespace_leaves_no_rules(testbed, tmp_path, monkeypatch):
    pod = testbed("app")["app"]
    failing_ip6tables(tmp_path, "nope")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin")
    with pytest.raises(CaptureError, match="nope; the previous rules were restored"):
        apply(CaptureSettings(ipv6=True), netns=pod.netns)
    rules = [line for line in pod.run("iptables-save").stdout.splitlines() if line.startswith("-")]
    assert rules == [] and "PYMESH" not in pod.run("iptables-save").stdout


def test_bad_input_to_iptables_restore_fails_cleanly(testbed):
    """A kernel without the TPROXY target would fail like this: the whole table is refused."""
    pod = make_pod(testbed, (4,))
    before = state(pod, (4,))
    result = pod.run("iptables-restore", "--noflush", input="*nat\n-A OUTPUT -j PYMESH_MISSING\nCOMMIT\n",
                     check=False)
    assert result.returncode != 0
    assert state(pod, (4,)) == before


def test_cli_writes_and_removes_the_rules_in_a_namespace(testbed, capsys, monkeypatch):
    for option in command.OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    pod = make_pod(testbed, (4,))
    before = state(pod, (4,))
    assert pymesh(["iptables", "--netns", pod.netns, "-p", "16001", "-b", "8080"]) == 0
    assert capsys.readouterr().out == "pymesh iptables: capture rules written (IPv4)\n"
    saved = pod.run("iptables-save").stdout
    assert "--to-ports 16001" in saved and "--dport 8080 -j PYMESH_IN_REDIRECT" in saved
    assert pymesh(["iptables", "clean", "--netns", pod.netns]) == 0
    assert capsys.readouterr().out == "pymesh iptables: capture rules removed (IPv4)\n"
    assert state(pod, (4,)) == before


def test_cli_failure_exits_1_with_the_command_named(testbed, capsys):
    pod = testbed("app")["app"]
    assert pymesh(["iptables", "--netns", pod.netns + "-missing"]) == 1
    assert "pymesh iptables: error: `iptables-save` failed" in capsys.readouterr().err


def test_init_step_as_the_container_runs_it(testbed):
    """`pymesh iptables` run inside the pod, configured by environment, as iptables/entrypoint.sh does."""
    bed = testbed("init", "library")
    bed["init"].run("env", "PYMESH_INBOUND_PORTS_INCLUDE=8080", "PYMESH_PROXY_UID=2000",
                    sys.executable, "-m", "pymesh", "iptables")
    apply(CaptureSettings(inbound_ports_include=(8080,), proxy_uid=2000), netns=bed["library"].netns)
    assert state(bed["init"], (4,)) == state(bed["library"], (4,))
    bed["init"].run(sys.executable, "-m", "pymesh", "iptables", "clean")
    assert "PYMESH" not in bed["init"].run("iptables-save").stdout
