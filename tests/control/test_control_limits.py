"""The control server and hostile files in its config directory: an alias bomb, deep nesting, an
oversized file and a load over the time limit are rejected files (file:line errors in /status),
the server keeps answering, and the next good edit still becomes a new version."""

from __future__ import annotations

import pytest

from control_harness import service_entry, write
from hostile_config import MIB, alias_bomb, deep_nesting, many_services, string_bomb, write_sparse

pytestmark = pytest.mark.timeout(60)


def rejected_errors(status: dict) -> dict[str, list[str]]:
    return {entry["file"]: entry["errors"] for entry in status["rejected"]}


def test_hostile_files_are_rejected_and_the_server_carries_on(control, config_dir) -> None:
    good = write(config_dir / "good.yaml", service_entry("a", "a.default.svc.cluster.local"))
    server = control("5.0", None, "--config-load-timeout", "1")
    first = server.wait_status(lambda s: s["version"] != "0", "the first version")["version"]
    bomb = write(config_dir / "bomb.yaml", alias_bomb())
    deep = write(config_dir / "deep.yaml", deep_nesting(1000))
    huge = write_sparse(config_dir / "huge.yaml", 52 * MIB)
    slow = write(config_dir / "slow.yaml", many_services(4000))
    status = server.wait_status(lambda s: len(s["rejected"]) == 4, "four rejected files", timeout=30)
    assert rejected_errors(status) == {
        str(bomb): [f"{bomb}:6: YAML aliases expand to more than 400000 nodes (the limit)"],
        str(deep): [f"{deep}:101: YAML nesting deeper than 100"],
        str(huge): [f"{huge}: file is 52 MiB, over the 8 MiB limit"],
        str(slow): [f"{slow}: loading took longer than the 1 s limit; stopped"],
    }
    assert status["version"] == first
    write(good, service_entry("a", "a2.default.svc.cluster.local"))
    server.wait_status(lambda s: s["version"] != first, "the next good edit to become a version", timeout=15)
    assert server.proc.poll() is None


def test_a_server_started_with_an_alias_bomb_in_its_directory_serves_the_rest(control, config_dir) -> None:
    write(config_dir / "good.yaml", service_entry("a", "a.default.svc.cluster.local"))
    bomb = write(config_dir / "bomb.yaml", alias_bomb())
    strings = write(config_dir / "strings.yaml", string_bomb())
    server = control()
    status = server.wait_status(lambda s: s["version"] != "0", "the first version")
    assert rejected_errors(status) == {
        str(bomb): [f"{bomb}:6: YAML aliases expand to more than 400000 nodes (the limit)"],
        str(strings): [f"{strings}:25: YAML aliases expand to more than 8 MiB of text (the limit)"],
    }
    assert server.proc.poll() is None
