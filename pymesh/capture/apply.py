"""Writing and removing the capture rules: all or nothing, and idempotent.

Each IP version's rules go in with one `*tables-restore --noflush` call (atomic per table), built by
rules.plan from the current iptables-save output, so applying again replaces pymesh's rules instead
of adding a second copy and nothing outside pymesh's chains changes. Every family's rules are saved
before the first change; if any step fails (the IPv6 step after IPv4 succeeded, the TPROXY routing
after both), what was changed is put back from that snapshot and the error names the failed command.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Optional

from pymesh.capture.rules import RESTORE_COMMAND, RouteEntry, RuleSet, generate, plan, tproxy_routes
from pymesh.capture.settings import CaptureSettings

SAVE_COMMAND = {4: "iptables-save", 6: "ip6tables-save"}

Runner = Callable[[Sequence[str], Optional[str]], str]
"""Runs argv with optional stdin text and returns stdout; raises CaptureError when it fails."""


class CaptureError(RuntimeError):
    """Applying or removing capture rules failed; the message names the command and its stderr."""


def command_runner(netns: str | None = None) -> Runner:
    """Run commands here, or inside the named network namespace (`ip netns exec NAME ...`)."""
    prefix = ("ip", "netns", "exec", netns) if netns else ()

    def run(argv: Sequence[str], stdin: str | None = None) -> str:
        shown = " ".join(argv)
        try:
            done = subprocess.run([*prefix, *argv], input=stdin, capture_output=True, text=True)
        except FileNotFoundError:
            raise CaptureError(f"`{shown}` failed: {prefix[0] if prefix else argv[0]} not found") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip() or "no output"
            raise CaptureError(f"`{shown}` failed (exit {done.returncode}): {detail}")
        return done.stdout

    return run


def apply(settings: CaptureSettings, *, netns: str | None = None, run: Runner | None = None) -> None:
    """Install the capture rules for `settings`, replacing any pymesh rules already there
    (and removing TPROXY routing for settings' mark and table when the mode no longer needs it)."""
    run = run or command_runner(netns)
    rulesets = {ruleset.family: ruleset for ruleset in generate(settings)}

    def route(run: Runner) -> None:
        (_add_routes if settings.uses_tproxy else _remove_routes)(run, settings)

    _transaction(run, rulesets, route)


def clean(settings: CaptureSettings = CaptureSettings(), *, netns: str | None = None,
          run: Runner | None = None) -> None:
    """Remove every pymesh chain and every jump into one, and the TPROXY routing entries for
    settings' mark and table; touches IPv6 only when settings.ipv6. Does nothing when clean."""
    run = run or command_runner(netns)
    _transaction(run, {family: None for family in settings.families},
                 lambda run: _remove_routes(run, settings))


def _transaction(run: Runner, wanted: Mapping[int, RuleSet | None], then: Callable[[Runner], None]) -> None:
    snapshots = {family: run([SAVE_COMMAND[family]], None) for family in wanted}
    changed: dict[int, list[str]] = {}  # family -> tables its restore touched
    try:
        for family, ruleset in wanted.items():
            text = plan(snapshots[family], ruleset)
            if text:
                changed[family] = [line[1:] for line in text.splitlines() if line.startswith("*")]
                run([RESTORE_COMMAND[family], "--noflush"], text)
        then(run)
    except CaptureError as error:
        raise _rollback(run, snapshots, changed, error) from error


def _rollback(run: Runner, snapshots: Mapping[int, str], changed: Mapping[int, list[str]],
              error: CaptureError) -> CaptureError:
    """Restore the saved rules of every family that was changed, and say how that went."""
    failures = []
    for family, tables in reversed(changed.items()):
        saved = snapshots[family]
        present = {line[1:].strip() for line in saved.splitlines() if line.startswith("*")}
        # A table that did not exist before is emptied: restoring it from nothing.
        text = saved + "".join(f"*{table}\nCOMMIT\n" for table in tables if table not in present)
        try:
            run([RESTORE_COMMAND[family]], text)
        except CaptureError as rollback_error:
            failures.append(str(rollback_error))
    if failures:
        return CaptureError(f"{error}; restoring the previous rules failed too: {'; '.join(failures)}")
    return CaptureError(f"{error}; the previous rules were restored" if changed else str(error))


def _exists(run: Runner, entry: RouteEntry) -> bool:
    try:
        return bool(run(entry.command("show"), None).strip())
    except CaptureError:
        return False  # `ip route show table N` fails while table N does not exist


def _add_routes(run: Runner, settings: CaptureSettings) -> None:
    added = []
    try:
        for entry in tproxy_routes(settings):
            if not _exists(run, entry):
                run(entry.command("add"), None)
                added.append(entry)
    except CaptureError:
        for entry in reversed(added):
            try:
                run(entry.command("del"), None)
            except CaptureError:
                pass  # the error being raised already says the routing step failed
        raise


def _remove_routes(run: Runner, settings: CaptureSettings) -> None:
    for entry in tproxy_routes(settings):
        for _ in range(16):  # an `ip rule add` done twice by hand leaves two copies
            if not _exists(run, entry):
                break
            run(entry.command("del"), None)
