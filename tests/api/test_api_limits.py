"""Input limits: a hostile file is refused with a clear error naming file, line and limit, before
it costs anything (size by stat, aliases and nesting by a linear scan), in-process and through
`pymesh analyze`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostile_config import MIB, alias_bomb, deep_nesting, many_services, padded, string_bomb, write_sparse
from pymesh.api.limits import Limits
from pymesh.api.load import load_paths, load_text

pytestmark = pytest.mark.timeout(60)

PYMESH = Path(sys.executable).with_name("pymesh")
VALID = many_services(1)


def only_error(result) -> str:
    assert len(result.errors) == 1, result.errors
    return str(result.errors[0])


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    message = only_error(load_text(alias_bomb(), "bomb.yaml"))
    assert message == "bomb.yaml:6: YAML aliases expand to more than 400000 nodes (the limit)"


def test_a_string_alias_bomb_is_refused_by_the_text_it_adds() -> None:
    """A few nodes, but 2 GB of header values: counted in characters, not only in nodes."""
    assert only_error(load_text(string_bomb(), "s.yaml")) == "s.yaml:25: YAML aliases expand to more than 8 MiB of text (the limit)"
    small = string_bomb(aliases=3, size=100)  # the same shape, harmless: accepted
    assert load_text(small, "s.yaml").ok


def test_alias_uses_are_counted() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 11) + "]\n"
    assert only_error(load_text(text, "a.yaml", Limits(max_aliases=10))) == "a.yaml:2: YAML aliases exceed the limit of 10"


def test_deep_nesting_is_refused_without_recursion() -> None:
    assert only_error(load_text(deep_nesting(1000), "deep.yaml")) == "deep.yaml:101: YAML nesting deeper than 100"
    assert only_error(load_text("a: " + "[" * 100_000, "flow.yaml")).startswith("flow.yaml:1: ")


def test_nesting_made_deep_by_aliases_is_refused() -> None:
    text = "a0: &a0 " + "[" * 60 + "]" * 60 + "\n" + "".join(
        f"a{i}: &a{i} [[[[[[[[[[[[[[[[[[[[*a{i - 1}]]]]]]]]]]]]]]]]]]]]\n" for i in range(1, 30))
    assert only_error(load_text(text, "a.yaml")) == "a.yaml:3: YAML nesting deeper than 100 (through aliases)"


def test_document_count() -> None:
    text = "---\na: 1\n---\nb: 2\n---\nc: 3\n"
    assert only_error(load_text(text, "d.yaml", Limits(max_documents=2))) == "d.yaml:5: more than 2 YAML documents in one file"


def test_a_large_file_is_refused_by_its_size_without_being_read(tmp_path: Path) -> None:
    path = write_sparse(tmp_path / "huge.yaml", 52 * MIB)  # NUL bytes: read, they would be a YAML error
    assert only_error(load_paths([str(path)])) == f"{path}: file is 52 MiB, over the 8 MiB limit"


def test_the_total_is_limited_across_files(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(padded(VALID.replace("svc-0", f"svc-{name}"), 400_000))
    result = load_paths([str(tmp_path)], Limits(max_total_bytes=MIB))
    assert only_error(result).startswith(f"{tmp_path / 'c.yaml'}: the configuration with this file is 1.1 MiB, over the 1 MiB limit")
    assert [se.metadata.name for se in result.config.service_entries] == ["svc-a", "svc-b"]


def test_within_the_limits_anchors_still_work() -> None:
    text = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: ns}
spec:
  hosts: [a.ns.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.0.0.1, labels: &same {app: a, version: v1}}
  - {address: 10.0.0.2, labels: *same}
"""
    (entry,) = load_text(text).strict().service_entries
    assert [dict(e.labels) for e in entry.endpoints] == [{"app": "a", "version": "v1"}] * 2


def test_limits_can_be_raised() -> None:
    assert "nesting" in only_error(load_text(deep_nesting(150), "d.yaml"))
    assert "nesting" not in str(load_text(deep_nesting(150), "d.yaml", Limits(max_depth=200)).errors)


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PYMESH), "analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["large", "bomb", "deep"])
def test_analyze_prints_the_limit_and_exits_1(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.yaml"
    if kind == "large":
        path.write_text(padded(VALID, 50 * MIB))
        expected = f"{path}: file is 50.0 MiB, over the 8 MiB limit"
    elif kind == "bomb":
        path.write_text(alias_bomb())
        expected = f"{path}:6: YAML aliases expand to more than 400000 nodes (the limit)"
    else:
        path.write_text(deep_nesting(1000))
        expected = f"{path}:101: YAML nesting deeper than 100"
    done = analyze(str(path))
    assert (done.returncode, done.stdout.splitlines()) == (1, [expected, "1 error in 1 file"]), done.stderr


def test_analyze_stops_a_load_over_its_time_limit(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(many_services(3000))  # about 2 MB: seconds to load, against a limit of 0.05 s
    done = analyze("--config-load-timeout", "0.05", str(path))
    assert (done.returncode, done.stdout) == (1, f"{path}: loading took longer than the 0.05 s limit; stopped\n")


def test_analyze_refuses_a_depth_limit_python_could_not_survive() -> None:
    done = analyze("--config-max-depth", "5000", "x.yaml")
    assert done.returncode == 2 and "expected a number from 1 to 300" in done.stderr
