"""The PythonFilter resource: what loads, and every bad value named by its field path (hostile
input included: traversal, symlinks out, huge or non-JSON pluginConfig)."""

from __future__ import annotations

import os

import pytest

from pymesh.api import model
from pymesh.api.load import load_paths, load_text

HEAD = """\
apiVersion: pymesh.dev/v1alpha1
kind: PythonFilter
metadata: {name: pf, namespace: default}
spec:
"""


def errors(spec: str) -> list[str]:
    result = load_text(HEAD + spec, "pf.yaml")
    return [f"{e.line} {e.path}: {e.message}" for e in result.errors]


def test_every_field_loads():
    result = load_text(HEAD + """\
  selector: {matchLabels: {app: ratings}}
  module: my_filters.apikey:ApiKey
  phase: AUTHZ
  priority: -7
  match:
  - mode: SERVER
    ports: [{number: 8080}, {number: 9090}]
  - {mode: CLIENT}
  pluginConfig: {header: x-api-key, keys: [a, b], nested: {enabled: true, ratio: 0.5, none: null}}
  failStrategy: FAIL_OPEN
""", "pf.yaml")
    assert result.ok, result.errors
    (f,) = result.config.python_filters
    assert f.module == model.FilterModule(import_path="my_filters.apikey:ApiKey")
    assert (f.selector, f.phase, f.priority, f.fail_strategy) == ({"app": "ratings"}, "AUTHZ", -7, "FAIL_OPEN")
    assert f.match == (model.FilterMatch("SERVER", (8080, 9090)), model.FilterMatch("CLIENT", ()))
    assert f.plugin_config == {"header": "x-api-key", "keys": ["a", "b"],
                               "nested": {"enabled": True, "ratio": 0.5, "none": None}}


def test_defaults_are_istios():
    result = load_text(HEAD + "  module: m:F\n", "pf.yaml")
    (f,) = result.config.python_filters
    assert (f.selector, f.target_refs, f.phase, f.priority, f.match, f.plugin_config, f.fail_strategy) == (
        None, (), "UNSPECIFIED_PHASE", 0, (), None, "FAIL_CLOSE")


@pytest.mark.parametrize("spec, expected", [
    ("  phase: AUTH\n", ["4 spec.module: required field is missing",
                          "5 spec.phase: phase 'AUTH' is not valid (expected AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE)"]),
    ("  module: m:F\n  priority: 2147483648\n", ["6 spec.priority: must be between -2147483648 and 2147483647, "
                                                 "got 2147483648"]),
    ("  module: m:F\n  failStrategy: FAIL_RELOAD\n", None),
    ("  module: m:F\n  match: [{mode: BOTH}]\n", None),
    ("  module: m:F\n  match: [{ports: [{number: 0}]}]\n", ["6 spec.match[0].ports[0].number: must be between 1 "
                                                            "and 65535, got 0"]),
    ("  module: m:F\n  url: oci://x\n", ["6 spec.url: unknown field"]),
    ("  module: not a path\n", ["5 spec.module: module 'not a path' must be package.module:Class "
                                "(or {file: ..., class: ...})"]),
    ("  module: pkg.mod\n", None),
    ("  module: pkg.mod:1Class\n", None),
    ("  module: 42\n", ["5 spec.module: expected a mapping, got 42"]),
    ("  module: {class: F}\n", ["5 spec.module.file: required field is missing"]),
    ("  module: m:F\n  pluginConfig: [1, 2]\n", ["6 spec.pluginConfig: expected a mapping, got a list"]),
    ("  module: m:F\n  pluginConfig: {1: one}\n", ["6 spec.pluginConfig.1: pluginConfig keys must be strings, got 1"]),
    ("  module: m:F\n  pluginConfig: {x: .nan}\n", ["6 spec.pluginConfig.x: pluginConfig numbers must be finite, "
                                                    "got nan"]),
    ("  module: m:F\n  pluginConfig: {when: 2024-01-01}\n", ["6 spec.pluginConfig.when: pluginConfig values must be "
                                                             "JSON values (strings, numbers, booleans), got date"]),
    ("  module: m:F\n  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: s}]\n",
     ["6 spec.selector: only one of targetRefs or workloadSelector can be set"]),
    ("  module: m:F\n  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: s}]\n",
     ["6 spec.targetRefs[0].kind: targetRef networking.istio.io/ServiceEntry is not supported (expected one of "
      "core/Service, gateway.networking.k8s.io/Gateway)"]),
    ("  module: m:F\n  targetRefs: [{kind: Service, name: s, namespace: other}]\n",
     ["6 spec.targetRefs[0].namespace: targetRef namespace other must be empty or the policy's namespace (default)"]),
])
def test_bad_values_are_named(spec, expected):
    found = errors(spec)
    if expected is None:  # the message is the shared converter's: only where it is
        assert len(found) == 1 and found[0].startswith(f"{HEAD.count(chr(10)) + spec.count(chr(10))} spec."), found
    else:
        assert found == expected


def test_a_huge_plugin_config_is_refused_by_size():
    big = ", ".join(f"k{i}: {'x' * 100}" for i in range(1000))
    (error,) = errors(f"  module: m:F\n  pluginConfig: {{{big}}}\n")
    assert error.startswith("6 spec.pluginConfig: pluginConfig is ") and error.endswith("over the 64 KiB limit")


def test_wasm_plugin_is_not_applied_and_points_to_python_filter():
    result = load_text("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: w}\nspec: {}\n",
                       "w.yaml")
    assert result.ok
    (warning,) = result.warnings
    assert "pymesh does not implement WasmPlugin" in warning.message and "PythonFilter" in warning.message


# --- file modules: inside the directory of the YAML that names them ----------------------------


def file_errors(tmp_path, file: str) -> list[str]:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "pf.yaml").write_text(HEAD + f"  module: {{file: {file!r}, class: F}}\n")
    result = load_paths([str(config)])
    return [f"{e.path}: {e.message}" for e in result.errors]


def test_a_file_beside_the_yaml_resolves(tmp_path):
    (tmp_path / "config" / "filters").mkdir(parents=True)
    (tmp_path / "config" / "filters" / "f.py").write_text("class F: pass\n")
    assert file_errors(tmp_path, "filters/f.py") == []
    (f,) = load_paths([str(tmp_path / "config")]).config.python_filters
    assert f.module.resolved == os.path.realpath(tmp_path / "config" / "filters" / "f.py")


@pytest.mark.parametrize("file, problem", [
    ("/etc/passwd.py", "must be relative to the directory of this YAML file"),
    ("~/f.py", "must be relative to the directory of this YAML file"),
    ("../outside.py", "must stay inside the directory of this YAML file (no ..)"),
    ("filters/../../outside.py", "must stay inside the directory of this YAML file (no ..)"),
    ("filters/f.txt", "must name a .py file"),
    ("missing.py", "not found in"),
])
def test_a_file_outside_or_missing_is_refused(tmp_path, file, problem):
    (tmp_path / "outside.py").write_text("class F: pass\n")
    (error,) = file_errors(tmp_path, file)
    assert error.startswith("spec.module.file: ") and problem in error


def test_a_symlink_out_of_the_directory_is_refused(tmp_path):
    (tmp_path / "outside.py").write_text("class F: pass\n")
    (tmp_path / "config").mkdir()
    os.symlink(tmp_path / "outside.py", tmp_path / "config" / "link.py")
    (error,) = file_errors(tmp_path, "link.py")
    assert "leads outside" in error


def test_a_file_module_needs_a_file_to_be_beside():
    (error,) = errors("  module: {file: f.py, class: F}\n")
    assert error.startswith("5 spec.module.file: file 'f.py': a file module is read beside its YAML file")
