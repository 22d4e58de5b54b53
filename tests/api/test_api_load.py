"""Loading files, directories and text: every error at once, bad resources left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymesh.api import model
from pymesh.api.load import ConfigError, ConfigInvalid, load_paths, load_paths_strict, load_text

WE = (
    "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
    "metadata:\n  name: {name}\nspec:\n  address: {address}\n"
)


def names(config: model.MeshConfig) -> list[str]:
    return [entry.metadata.name for entry in config.workload_entries]


def test_config_error_str() -> None:
    assert str(ConfigError("vs.yaml", 14, "spec.http[0].retries.attempts", "must be >= 0")) == (
        "vs.yaml:14 spec.http[0].retries.attempts: must be >= 0"
    )
    assert str(ConfigError("vs.yaml", 3, "", "invalid YAML: x")) == "vs.yaml:3: invalid YAML: x"
    assert str(ConfigError("gone.yaml", 0, "", "no such file or directory")) == "gone.yaml: no such file or directory"


def test_multi_document_file(data: Path) -> None:
    result = load_paths([str(data / "tree" / "b.yaml")])
    assert result.ok and result.errors == []
    assert names(result.config) == ["b", "b2"]
    assert [e.metadata.source.line for e in result.config.workload_entries] == [1, 9]
    assert result.resource_count == 2


def test_directory_is_walked_recursively_in_sorted_order(data: Path) -> None:
    tree = data / "tree"
    result = load_paths([str(tree)])
    assert result.errors == []  # the hidden copy of a.yml would be a duplicate; notes.txt is not YAML
    assert names(result.config) == ["a", "b", "b2", "c"]
    assert result.files == (str(tree / "a.yml"), str(tree / "b.yaml"), str(tree / "nested" / "c.yaml"))


def test_each_file_is_read_once(data: Path) -> None:
    b = str(data / "tree" / "b.yaml")
    result = load_paths([b, str(data / "tree"), b])
    assert result.errors == [] and names(result.config) == ["b", "b2", "a", "c"]


def test_bad_yaml_is_one_error_and_other_files_still_load(tmp_path: Path) -> None:
    (tmp_path / "a-bad.yaml").write_text(WE.format(name="a", address="10.0.0.1") + "  ports: [80\n")
    (tmp_path / "b-good.yaml").write_text(WE.format(name="b", address="10.0.0.2"))
    result = load_paths([str(tmp_path)])
    assert [str(e) for e in result.errors] == [
        f"{tmp_path / 'a-bad.yaml'}:8: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)"
    ]
    assert names(result.config) == ["b"]


def test_bad_resource_is_left_out_good_ones_in_same_file_kept() -> None:
    text = WE.format(name="good", address="10.0.0.1") + "---\n" + WE.format(name="bad", address="not an ip")
    result = load_text(text, "mixed.yaml")
    assert [str(e) for e in result.errors] == [
        "mixed.yaml:13 spec.address: address 'not an ip' is not an IP address or a DNS name"
    ]
    assert names(result.config) == ["good"]
    assert not result.ok


def test_errors_from_all_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(WE.format(name="one", address="'a b'"))
    (tmp_path / "two.yaml").write_text(WE.format(name="Two", address="10.0.0.2"))
    result = load_paths([str(tmp_path / "two.yaml"), str(tmp_path / "one.yaml"), str(tmp_path / "three.yaml")])
    assert [(Path(e.file).name, e.line, e.path) for e in result.errors] == [
        ("two.yaml", 4, "metadata.name"),
        ("one.yaml", 6, "spec.address"),
        ("three.yaml", 0, ""),
    ]
    assert result.errors[2].message == "no such file or directory"
    assert result.config == model.MeshConfig()


def test_same_resource_twice_is_an_error_naming_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(WE.format(name="dup", address="10.0.0.1"))
    (tmp_path / "b.yaml").write_text("# again\n" + WE.format(name="dup", address="10.0.0.2"))
    result = load_paths([str(tmp_path)])
    assert [str(e) for e in result.errors] == [
        f"{tmp_path / 'b.yaml'}:5 metadata.name: WorkloadEntry default/dup is already defined at "
        f"{tmp_path / 'a.yaml'}:1"
    ]
    assert [e.spec.address for e in result.config.workload_entries] == ["10.0.0.1"]


def test_same_name_in_other_namespace_or_kind_is_fine() -> None:
    text = (
        WE.format(name="x", address="10.0.0.1")
        + "---\n"
        + WE.format(name="x", address="10.0.0.2").replace("  name: x\n", "  name: x\n  namespace: other\n")
        + "---\n"
        + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        + "metadata: {name: x}\nspec: {hosts: [x.example.com]}\n"
    )
    result = load_text(text)
    assert result.errors == [] and result.resource_count == 3
    assert result.config.workload_entries[1].metadata.namespace == "other"
    assert result.config.workload_entries[0].metadata.source == model.Source("<memory>", 1)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"a: caf\xe9\n")
    result = load_paths([str(tmp_path / "latin1.yaml")])
    assert [str(e) for e in result.errors] == [
        f"{tmp_path / 'latin1.yaml'}: not UTF-8 text: invalid continuation byte at byte 6"
    ]


def test_three_mistakes_all_reported(data: Path) -> None:
    path = data / "three-mistakes.yaml"
    result = load_paths([str(path)])
    assert [str(e) for e in result.errors] == [
        f"{path}:13 spec.http[0].retries.attempts: must be >= 0, got -2",
        f"{path}:16 spec.http[0].fault.abort.httpStatus: must be between 200 and 599, got 700",
        f"{path}:26 spec.trafficPolicy.loadBalancer.simple: load balancer 'FASTEST' is not valid "
        "(expected ROUND_ROBIN, LEAST_REQUEST, RANDOM or PASSTHROUGH)",
    ]
    assert result.config == model.MeshConfig()


def test_strict_raises_with_every_error(data: Path) -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_paths_strict([str(data / "three-mistakes.yaml")])
    assert len(info.value.errors) == 3
    assert str(info.value).splitlines() == [str(e) for e in info.value.errors]


def test_strict_returns_config_when_valid(data: Path) -> None:
    config = load_paths_strict([str(data / "tree")])
    assert names(config) == ["a", "b", "b2", "c"]
    assert load_text(WE.format(name="w", address="10.0.0.1")).strict().workload_entries[0].spec.address == "10.0.0.1"


def test_a_kubernetes_list_is_read_item_by_item() -> None:
    """`kubectl get virtualservices,serviceentries -o yaml` writes a v1 List; each item is a
    resource, reported at its own line."""
    result = load_text("""\
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: ServiceEntry
  metadata: {name: a, namespace: x}
  spec: {hosts: [a.example.com], resolution: DNS, ports: [{number: 80, name: http, protocol: HTTP}]}
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: bad}
  spec: {hosts: [a.example.com]}
""", "list.yaml")
    assert [se.metadata.name for se in result.config.service_entries] == ["a"]
    assert [(e.line, e.path, e.message) for e in result.errors] == [(11, "spec", "one of http, tcp or tls is required")]
