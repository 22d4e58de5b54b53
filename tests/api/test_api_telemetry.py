"""Telemetry and Istio's MeshConfig (the istio ConfigMap, --mesh-config): what loads, and the
errors, with Istio's field paths, for what Istio (or pymesh's CEL subset) refuses."""

from __future__ import annotations

import pytest

from pymesh.api.errors import ConfigInvalid
from pymesh.api.load import load_text
from pymesh.api.meshconfig import load_file


def telemetry(spec: str, api: str = "telemetry.istio.io/v1") -> str:
    return f"apiVersion: {api}\nkind: Telemetry\nmetadata: {{name: t, namespace: default}}\nspec:\n{spec}"


def errors(text: str) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in load_text(text).errors]


@pytest.mark.parametrize("spec, expected", [
    ("  tracing: [{randomSamplingPercentage: 101}]\n",
     [("spec.tracing[0].randomSamplingPercentage", "must be between 0 and 100, got 101")]),
    ("  tracing: [{customTags: {a: {literal: {value: x}, header: {name: y}}}}]\n",
     [("spec.tracing[0].customTags[a].header", "only one of literal, environment or header may be set (also found literal)")]),
    ("  tracing: [{match: {mode: BOTH}}]\n",
     [("spec.tracing[0].match.mode", "mode 'BOTH' is not valid (expected CLIENT_AND_SERVER, CLIENT or SERVER)")]),
    ("  accessLogging: [{filter: {expression: 'foo.bar == 1'}}]\n",
     [("spec.accessLogging[0].filter.expression", "expression 'foo.bar == 1': attribute foo.bar is not supported")]),
    ("  accessLogging: [{filter: {}}]\n", [("spec.accessLogging[0].filter.expression", "required field is missing")]),
    ("  metrics: [{overrides: [{match: {metric: REQUEST_COUNT, customMetric: x}}]}]\n",
     [("spec.metrics[0].overrides[0].match.customMetric",
       "only one of metric or customMetric may be set (also found metric)")]),
    ("  metrics: [{overrides: [{tagOverrides: {a: {operation: REMOVE, value: \"'x'\"}}}]}]\n",
     [("spec.metrics[0].overrides[0].tagOverrides[a].value", "must not be set when operation is REMOVE")]),
    ("  metrics: [{overrides: [{tagOverrides: {a: {operation: UPSERT}}}]}]\n",
     [("spec.metrics[0].overrides[0].tagOverrides[a].value", "must be set when operation is UPSERT")]),
    ("  metrics: [{reportingInterval: 0s}]\n", [("spec.metrics[0].reportingInterval", "must be greater than 0")]),
    ("  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\n",
     [("spec.selector", "only one of targetRefs or workloadSelector can be set")]),
    ("  tracing: [{enableIstioTags: true}]\n", [("spec.tracing[0].enableIstioTags", "field not supported by pymesh yet")]),
    # NaN passed every bound (its comparisons are false); JSON, hence the API server, cannot carry it
    ("  tracing: [{randomSamplingPercentage: .nan}]\n",
     [("spec.tracing[0].randomSamplingPercentage", "expected a number, got nan")]),
    ("  tracing: [{randomSamplingPercentage: .inf}]\n",
     [("spec.tracing[0].randomSamplingPercentage", "must be between 0 and 100, got inf")]),
    # formatting it for the error raised OverflowError out of the loader
    ("  tracing: [{randomSamplingPercentage: 1" + "0" * 400 + "}]\n",
     [("spec.tracing[0].randomSamplingPercentage", "must be between 0 and 100, got a 401-digit integer")]),
])
def test_telemetry_validation(spec, expected):
    assert errors(telemetry(spec)) == expected


def test_v1alpha1_loads_as_v1():
    spec = "  accessLogging: [{providers: [{name: envoy}]}]\n"
    assert load_text(telemetry(spec, "telemetry.istio.io/v1alpha1")).config.telemetries == \
        load_text(telemetry(spec)).config.telemetries


def config_map(mesh: str, name: str = "istio", namespace: str = "istio-system") -> str:
    body = "\n".join("    " + line for line in mesh.splitlines())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata:\n  mesh: |-\n{body}\n"


@pytest.mark.parametrize("mesh, expected", [
    ("extensionProviders:\n- name: z\n  zipkin: {port: 9411}",
     [(8, "data.mesh.extensionProviders[0].zipkin.service", "required field is missing")]),
    ("extensionProviders:\n- name: a\n  prometheus: {}\n- name: a\n  prometheus: {}",
     [(6, "data.mesh.extensionProviders[1].name", "duplicate extension provider name 'a'")]),
    ("accessLogEncoding: XML", [(6, "data.mesh.accessLogEncoding",
                                 "accessLogEncoding 'XML' is not valid (expected TEXT or JSON)")]),
    ("accessLogFormat: '%BOGUS%'", [(6, "data.mesh.accessLogFormat", "unknown command operator %BOGUS%")]),
    ("enableTracin: true", [(6, "data.mesh.enableTracin", 'unknown field (did you mean "enableTracing"?)')]),
    ("defaultConfig: {tracing: {sampling: .nan}}", [(6, "data.mesh.defaultConfig.tracing.sampling", "expected a number, got nan")]),
    ("defaultConfig: {tracing: {sampling: 2024-02-30}}",  # raised ValueError out of the loader
     [(6, "data.mesh.defaultConfig.tracing.sampling", "'2024-02-30' is not a valid YAML timestamp (quote it for a string)")]),
    ("defaultConfig: {tracing: {zipkin: {address: 'zipkin:²'}}}",  # int() raised in the compiler
     [(6, "data.mesh.defaultConfig.tracing.zipkin.address", "'zipkin:²' is not host:port (a port from 1 to 65535)")]),
    ("defaultConfig: {tracing: {zipkin: {address: 'zipkin:99999'}}}",
     [(6, "data.mesh.defaultConfig.tracing.zipkin.address", "'zipkin:99999' is not host:port (a port from 1 to 65535)")]),
    ("enableTracing: false\nenableTracing: true",  # YAML's own problems inside data.mesh were dropped
     [(7, "data.mesh", "duplicate key 'enableTracing' (first at line 1)")]),
    ("extensionProviders:\n- name: o\n  opentelemetry: {service: s, port: 1, http: {}, grpc: {}}",
     [(8, "data.mesh.extensionProviders[0].opentelemetry.grpc", "only one of http or grpc may be set")]),
])
def test_mesh_config_validation_points_into_data_mesh(mesh, expected):
    assert [(e.line, e.path, e.message) for e in load_text(config_map(mesh)).errors] == expected


def test_mesh_config_snake_case_and_no_effect_fields():
    mesh = ("trustDomain: cluster.local\ndefault_providers: {metrics: [prometheus]}\nextension_providers:\n"
            "- name: z\n  zipkin: {service: zipkin.istio-system, port: 9411, max_tag_length: 56}")
    (loaded,) = load_text(config_map(mesh)).config.mesh_configs
    assert loaded.extension_providers[0].max_tag_length == 56 and loaded.default_metrics == ("prometheus",)
    assert loaded.no_effect == ("trustDomain",)


def test_other_config_maps_are_not_applied():
    result = load_text(config_map("enableTracin: 1", name="other") + "---\n" + config_map("x: 1", namespace="default"))
    assert result.errors == [] and result.config.mesh_configs == ()


def test_mesh_config_file(tmp_path):
    path = tmp_path / "mesh"
    path.write_text("accessLogFile: /dev/stdout\nextensionProviders:\n- name: e\n  envoyFileAccessLog: {path: /tmp/x}\n")
    mesh = load_file(str(path))
    assert mesh.access_log_file == "/dev/stdout" and mesh.extension_providers[0].path == "/tmp/x"
    path.write_text("accessLogFile: [1]\n")
    with pytest.raises(ConfigInvalid, match="accessLogFile"):
        load_file(str(path))


@pytest.mark.parametrize("defaults, metrics", [
    ("", ("prometheus",)),
    ("defaultProviders: {tracing: [zipkin]}", ("prometheus",)),  # merged onto Istio's defaults
    ("defaultProviders: {metrics: []}", ()),
    ("defaultProviders: {metrics: [custom]}", ("custom",)),
])
def test_default_metrics_provider_is_prometheus_unless_given(defaults, metrics):
    (loaded,) = load_text(config_map(defaults or "enableTracing: true")).config.mesh_configs
    assert loaded.default_metrics == metrics
