"""apply/clean orchestration with a fake command runner: snapshot first, roll back on failure.

The real thing, in network namespaces, is in test_capture_netns.py.
"""

from __future__ import annotations

import pytest

from pymesh.capture.apply import CaptureError, apply, clean, command_runner
from pymesh.capture.settings import CaptureSettings

V4_SAVED = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 198.18.0.9/32 -j RETURN\nCOMMIT\n"
V6_SAVED = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"


class FakeRunner:
    """Answers `*-save` with canned text, fails the commands it is told to, records every call."""

    def __init__(self, fail: dict[str, str] | None = None, outputs: dict[str, str] | None = None):
        self.fail = fail or {}
        self.outputs = {"iptables-save": V4_SAVED, "ip6tables-save": V6_SAVED, **(outputs or {})}
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, argv, stdin=None) -> str:
        command = " ".join(argv)
        self.calls.append((command, stdin))
        if command in self.fail:
            raise CaptureError(f"`{command}` failed (exit 2): {self.fail[command]}")
        return self.outputs.get(command, "")

    def commands(self) -> list[str]:
        return [command for command, _ in self.calls]

    def stdin(self, command: str) -> list[str]:
        return [stdin for c, stdin in self.calls if c == command]


def test_apply_saves_everything_before_changing_anything():
    run = FakeRunner()
    apply(CaptureSettings(ipv6=True), run=run)
    assert [c for c in run.commands() if not c.startswith("ip ")] == [
        "iptables-save", "ip6tables-save", "iptables-restore --noflush", "ip6tables-restore --noflush"]


def test_ipv6_failure_restores_ipv4_and_names_the_command():
    run = FakeRunner(fail={"ip6tables-restore --noflush": "line 3: no chain/target/match"})
    with pytest.raises(CaptureError) as error:
        apply(CaptureSettings(ipv6=True), run=run)
    message = str(error.value)
    assert message.startswith("`ip6tables-restore --noflush` failed (exit 2): line 3: no chain/target/match")
    assert message.endswith("the previous rules were restored")
    # both families are put back (the failed restore may have committed some tables), newest first
    assert run.commands()[4:] == ["ip6tables-restore", "iptables-restore"]
    assert run.stdin("iptables-restore") == [V4_SAVED]
    # nat did not exist in the IPv6 snapshot: it is emptied instead of left with pymesh's rules
    assert run.stdin("ip6tables-restore") == [V6_SAVED + "*nat\nCOMMIT\n"]


def test_a_failed_snapshot_changes_nothing():
    run = FakeRunner(fail={"ip6tables-save": "can't initialize ip6tables table `filter'"})
    with pytest.raises(CaptureError, match="`ip6tables-save` failed .*can't initialize") as error:
        apply(CaptureSettings(ipv6=True), run=run)
    assert run.commands() == ["iptables-save", "ip6tables-save"]
    assert "restored" not in str(error.value)


def test_a_failed_rollback_is_reported_too():
    run = FakeRunner(fail={"iptables-restore --noflush": "bad rule", "iptables-restore": "locked"})
    with pytest.raises(CaptureError) as error:
        apply(CaptureSettings(), run=run)
    assert str(error.value) == ("`iptables-restore --noflush` failed (exit 2): bad rule; restoring the previous "
                                "rules failed too: `iptables-restore` failed (exit 2): locked")


def test_tproxy_routing_is_added_once_and_undone_when_a_later_step_fails():
    route_add = "ip -4 route add local default dev lo table 133"
    run = FakeRunner(fail={"ip -4 route show table 133 type local exact default dev lo": "FIB table does not exist",
                           route_add: "RTNETLINK answers: Operation not permitted"})
    with pytest.raises(CaptureError, match="RTNETLINK answers: Operation not permitted; the previous rules were"):
        apply(CaptureSettings(mode="TPROXY"), run=run)
    commands = run.commands()
    assert commands[:3] == ["iptables-save", "iptables-restore --noflush", "ip -4 rule show fwmark 1337 lookup 133"]
    assert commands[3:] == ["ip -4 rule add fwmark 1337 lookup 133",
                            "ip -4 route show table 133 type local exact default dev lo", route_add,
                            "ip -4 rule del fwmark 1337 lookup 133",  # this call's own addition, undone
                            "iptables-restore"]


def test_existing_tproxy_routing_is_left_as_it_is():
    run = FakeRunner(outputs={
        "ip -4 rule show fwmark 1337 lookup 133": "32765: from all fwmark 0x539 lookup 133\n",
        "ip -4 route show table 133 type local exact default dev lo": "local default scope host\n",
    })
    apply(CaptureSettings(mode="TPROXY"), run=run)
    assert not [c for c in run.commands() if " add " in c or " del " in c]


def test_redirect_mode_only_looks_for_stale_tproxy_routing():
    run = FakeRunner()
    apply(CaptureSettings(), run=run)
    assert [c for c in run.commands() if c.startswith("ip ")] == [
        "ip -4 rule show fwmark 1337 lookup 133", "ip -4 route show table 133 type local exact default dev lo"]


def test_clean_with_nothing_to_remove_runs_no_restore():
    run = FakeRunner(fail={"ip -4 route show table 133 type local exact default dev lo": "FIB table does not exist"})
    clean(CaptureSettings(), run=run)
    assert run.commands() == ["iptables-save", "ip -4 rule show fwmark 1337 lookup 133",
                              "ip -4 route show table 133 type local exact default dev lo"]


def test_clean_removes_pymesh_rules_and_routing():
    saved = "*nat\n:OUTPUT ACCEPT [0:0]\n:PYMESH_OUTPUT - [0:0]\n-A OUTPUT -p tcp -j PYMESH_OUTPUT\nCOMMIT\n"

    class Routed(FakeRunner):
        rule_present = True

        def __call__(self, argv, stdin=None):
            command = " ".join(argv)
            if command == "ip -4 rule show fwmark 1337 lookup 133":
                self.calls.append((command, stdin))
                return "32765: from all fwmark 0x539 lookup 133\n" if self.rule_present else ""
            if command == "ip -4 rule del fwmark 1337 lookup 133":
                self.rule_present = False
            return super().__call__(argv, stdin)

    run = Routed(outputs={"iptables-save": saved})
    clean(CaptureSettings(), run=run)
    assert run.stdin("iptables-restore --noflush") == [
        "*nat\n:PYMESH_OUTPUT - [0:0]\n-D OUTPUT -p tcp -j PYMESH_OUTPUT\n-X PYMESH_OUTPUT\nCOMMIT\n"]
    assert "ip -4 rule del fwmark 1337 lookup 133" in run.commands()
    assert "ip -4 route del local default dev lo table 133" not in run.commands()  # its show printed nothing


def test_command_runner_reports_missing_and_failing_commands():
    run = command_runner()
    with pytest.raises(CaptureError, match="`pymesh-no-such-tool --x` failed: pymesh-no-such-tool not found"):
        run(["pymesh-no-such-tool", "--x"], None)
    with pytest.raises(CaptureError, match=r"`sh -c echo oops >&2; exit 3` failed \(exit 3\): oops"):
        run(["sh", "-c", "echo oops >&2; exit 3"], None)
    assert run(["cat"], "fed through stdin") == "fed through stdin"
