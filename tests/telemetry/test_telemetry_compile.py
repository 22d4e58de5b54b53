"""Mesh config + Telemetry -> TelemetryPolicy, table-driven against Istio's merge rules
(pilot/pkg/model/telemetry.go and its tests): precedence root < namespace < workload, per-mode
access logging, metrics overrides merged per metric/mode/tag, tracing's first provider."""

from __future__ import annotations

import pytest

from pymesh.api.load import load_text
from pymesh.routing.snapshot import ProxyIdentity
from pymesh.routing.telemetry import compile_telemetry
from pymesh.telemetry.policy import DEFAULT, MetricOverride

MESH = """
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    defaultConfig: {tracing: {sampling: 5}}
    extensionProviders:
    - name: zipkin
      zipkin: {service: zipkin.istio-system, port: 9411}
    - name: otel
      opentelemetry: {service: otel.observability, port: 4318, http: {path: /v1/traces}}
    - name: errors
      envoyFileAccessLog: {path: /tmp/errors.log}
    - name: authz
      envoyExtAuthzHttp: {service: authz.foo, port: 8000}
"""


def telemetry(name: str, namespace: str, spec: str, selector: str = "") -> str:
    sel = f"  selector: {{matchLabels: {{{selector}}}}}\n" if selector else ""
    return (f"---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec:\n{sel}{spec}")


def compile_(*docs: str, mesh: str = MESH, labels: dict | None = None, namespace: str = "default",
             kind: str = "sidecar"):
    result = load_text(mesh + "".join(docs))
    assert result.errors == [], result.errors
    warnings: list[str] = []
    identity = ProxyIdentity(namespace=namespace, labels=labels or {"app": "sleep"}, kind=kind)
    return compile_telemetry(result.config, identity, warnings), warnings


LOG_ENVOY = "  accessLogging: [{providers: [{name: envoy}]}]\n"
LOG_OFF = "  accessLogging: [{providers: [{name: envoy}], disabled: true}]\n"
LOG_ERRORS = "  accessLogging: [{providers: [{name: errors}], filter: {expression: 'response.code >= 400'}}]\n"


def test_no_configuration_is_the_default():
    assert compile_(mesh="")[0] is DEFAULT


@pytest.mark.parametrize("docs, labels, names, filter_", [
    ([telemetry("mesh", "istio-system", LOG_ENVOY)], None, ["envoy"], ""),
    # the workload's disables the mesh's, for the selected workload only
    ([telemetry("mesh", "istio-system", LOG_ENVOY), telemetry("w", "default", LOG_OFF, "app: sleep")], None, [], ""),
    ([telemetry("mesh", "istio-system", LOG_ENVOY), telemetry("w", "default", LOG_OFF, "app: sleep")],
     {"app": "other"}, ["envoy"], ""),
    # the namespace's names another provider: only it is in scope
    ([telemetry("mesh", "istio-system", LOG_ENVOY), telemetry("ns", "default", LOG_ERRORS)], None, ["errors"],
     "response.code >= 400"),
    # another namespace's Telemetry never applies
    ([telemetry("ns", "other", LOG_ENVOY)], None, [], ""),
    # a root-namespace one with a selector is a workload one of istio-system, not the mesh's
    ([telemetry("sel", "istio-system", LOG_ENVOY, "app: sleep")], None, [], ""),
    # an entry without providers inherits its parent's: disables envoy
    ([telemetry("mesh", "istio-system", LOG_ENVOY),
      telemetry("w", "default", "  accessLogging: [{disabled: true}]\n", "app: sleep")], None, [], ""),
])
def test_access_logging_precedence(docs, labels, names, filter_):
    policy, _ = compile_(*docs, labels=labels)
    assert [p.name for p in policy.access_logging.providers] == names
    assert policy.access_logging.filter == filter_


def test_the_oldest_namespace_wide_telemetry_applies():
    older = telemetry("b-older", "default", LOG_ENVOY).replace("namespace: default}",
                                                              "namespace: default, creationTimestamp: '2020-01-01T00:00:00Z'}")
    newer = telemetry("a-newer", "default", LOG_OFF).replace("namespace: default}",
                                                            "namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}")
    policy, _ = compile_(newer, older)
    assert [p.name for p in policy.access_logging.providers] == ["envoy"]


@pytest.mark.parametrize("mode, outbound, inbound", [
    ("CLIENT", ["envoy"], []),
    ("SERVER", [], ["envoy"]),
    ("CLIENT_AND_SERVER", ["envoy"], ["envoy"]),
])
def test_access_logging_match_mode(mode, outbound, inbound):
    spec = f"  accessLogging: [{{match: {{mode: {mode}}}, providers: [{{name: envoy}}]}}]\n"
    policy, _ = compile_(telemetry("mesh", "istio-system", spec))
    server = policy.inbound_access_logging or policy.access_logging
    assert [p.name for p in policy.access_logging.providers] == outbound
    assert [p.name for p in server.providers] == inbound


def test_legacy_access_log_file_applies_without_telemetry_logging():
    mesh = MESH.replace("    defaultConfig:", "    accessLogFile: /tmp/legacy.log\n    accessLogEncoding: JSON\n    defaultConfig:")
    policy, _ = compile_(mesh=mesh)
    (provider,) = policy.access_logging.providers
    assert provider.path == "/tmp/legacy.log" and dict(provider.labels)["response_code"] == "%RESPONSE_CODE%"
    policy, _ = compile_(telemetry("mesh", "istio-system", LOG_OFF), mesh=mesh)
    assert policy.access_logging.providers == ()


def test_unknown_and_unrunnable_providers_warn():
    spec = "  accessLogging: [{providers: [{name: nope}, {name: authz}, {name: zipkin}]}]\n"
    policy, warnings = compile_(telemetry("mesh", "istio-system", spec))
    assert policy.access_logging.providers == ()
    assert any("'nope' is not defined" in w for w in warnings)
    assert any("'authz' (envoyExtAuthzHttp) is not supported by pymesh" in w for w in warnings)
    assert any("'zipkin' (zipkin) is not a access logging provider" in w for w in warnings)


TRACE_MESH = "  tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 100, customTags: {a: {literal: {value: x}}}}]\n"


@pytest.mark.parametrize("workload_spec, provider, sampling, tags", [
    ("", "zipkin", 100.0, ["a"]),
    # later entries set only what they set; customTags replace the whole set
    ("  tracing: [{randomSamplingPercentage: 20}]\n", "zipkin", 20.0, ["a"]),
    ("  tracing: [{providers: [{name: otel}, {name: zipkin}], customTags: {b: {header: {name: x-b}}}}]\n",
     "otel", 100.0, ["b"]),
])
def test_tracing_merge(workload_spec, provider, sampling, tags):
    docs = [telemetry("mesh", "istio-system", TRACE_MESH)]
    if workload_spec:
        docs.append(telemetry("w", "default", workload_spec, "app: sleep"))
    policy, _ = compile_(*docs)
    assert policy.tracing.provider.name == provider
    assert policy.tracing.sampling_percent == sampling
    assert [t.name for t in policy.tracing.custom_tags] == tags


def test_tracing_sampling_defaults_to_the_mesh_configs_and_off_without_a_provider():
    policy, _ = compile_(telemetry("mesh", "istio-system", "  tracing: [{providers: [{name: zipkin}]}]\n"))
    assert policy.tracing.sampling_percent == 5.0 and policy.tracing.provider.port == 9411
    policy, _ = compile_(telemetry("mesh", "istio-system", "  tracing: [{randomSamplingPercentage: 50}]\n"))
    assert policy.tracing.provider is None


def test_legacy_zipkin_address():
    mesh = MESH.replace("defaultConfig: {tracing: {sampling: 5}}",
                        "defaultConfig: {tracing: {sampling: 100, zipkin: {address: 'zipkin.istio-system:9411'}}}")
    policy, _ = compile_(mesh=mesh)
    assert (policy.tracing.provider.service, policy.tracing.provider.port) == ("zipkin.istio-system", 9411)
    policy, _ = compile_(mesh=mesh.replace("    defaultConfig:", "    enableTracing: false\n    defaultConfig:"))
    assert policy.tracing.provider is None


def metrics_spec(overrides: str, providers: str = "[{name: prometheus}]") -> str:
    return f"  metrics: [{{providers: {providers}, overrides: {overrides}}}]\n"


@pytest.mark.parametrize("docs, expected, disabled", [
    ([metrics_spec("[{match: {metric: REQUEST_COUNT, mode: CLIENT}, disabled: true}]")],
     [MetricOverride("REQUEST_COUNT", "CLIENT", disabled=True)], False),
    # tags merge per tag across levels; REMOVE then UPSERT of the same tag: the later wins
    ([metrics_spec("[{match: {metric: REQUEST_COUNT}, tagOverrides: {a: {value: \"'1'\"}, b: {operation: REMOVE}}}]"),
      metrics_spec("[{match: {metric: REQUEST_COUNT, mode: SERVER}, tagOverrides: {b: {value: request.host}}}]")],
     [MetricOverride("REQUEST_COUNT", "CLIENT", tags_removed=("b",), tags_set=(("a", "'1'"),)),
      MetricOverride("REQUEST_COUNT", "SERVER", tags_set=(("a", "'1'"), ("b", "request.host")))], False),
    # disabling ALL_METRICS drops the provider; a later override turns it back on
    ([metrics_spec("[{disabled: true}]")], [], True),
    ([metrics_spec("[{disabled: true}]"),
      metrics_spec("[{match: {metric: TCP_SENT_BYTES}, disabled: true}]")],
     [MetricOverride("TCP_SENT_BYTES", "CLIENT", disabled=True), MetricOverride("TCP_SENT_BYTES", "SERVER", disabled=True)],
     False),
    # a lower level naming no prometheus provider takes prometheus out of scope
    ([metrics_spec("[]"), metrics_spec("[]", providers="[{name: zipkin}]")], [], True),
])
def test_metrics_merge(docs, expected, disabled):
    levels = [telemetry("mesh", "istio-system", docs[0])]
    if len(docs) > 1:
        levels.append(telemetry("ns", "default", docs[1]))
    policy, _ = compile_(*levels)
    assert list(policy.metrics.overrides) == expected
    assert policy.metrics.disabled == disabled


def test_a_gateway_telemetry_by_target_ref_and_no_effect_warnings():
    spec = "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n" + LOG_ENVOY
    mesh = MESH.replace("    defaultConfig:", "    trustDomain: example.org\n    defaultConfig:")
    policy, warnings = compile_(telemetry("gw", "ingress", spec), mesh=mesh, namespace="ingress",
                                labels={"gateway.networking.k8s.io/gateway-name": "gw"}, kind="router")
    assert [p.name for p in policy.access_logging.providers] == ["envoy"] and policy.inbound_access_logging is None
    assert "mesh config: trustDomain has no effect in pymesh" in warnings


def test_the_view_sends_the_mesh_config_and_the_telemetries_that_may_apply():
    from pymesh.routing.view import proxy_view

    docs = [telemetry("mesh", "istio-system", LOG_ENVOY), telemetry("ns", "default", LOG_OFF),
            telemetry("elsewhere", "other", LOG_ENVOY)]
    config = load_text(MESH + "".join(docs)).config
    view = proxy_view(config, ProxyIdentity(namespace="default", labels={"app": "sleep"}))
    assert [t.metadata.name for t in view.telemetries] == ["mesh", "ns"]
    assert view.mesh_configs == config.mesh_configs
    identity = ProxyIdentity(namespace="default", labels={"app": "sleep"})
    assert compile_telemetry(view, identity, []) == compile_telemetry(config, identity, [])


def test_reporting_interval_is_accepted_with_a_warning():
    spec = "  metrics: [{providers: [{name: prometheus}], reportingInterval: 5s}]\n"
    _, warnings = compile_(telemetry("ns", "default", spec))
    assert "Telemetry default/ns: metrics reportingInterval has no effect in pymesh (its metrics are current at every scrape)" in warnings


def test_the_config_dump_shows_the_policy_with_collector_headers_redacted():
    from pymesh.routing.compile import compile_snapshot
    from pymesh.routing.dump import REDACTED, dump_snapshot

    mesh = MESH.replace("http: {path: /v1/traces}", "http: {path: /v1/traces, headers: [{name: authorization, value: secret}]}")
    config = load_text(mesh + telemetry("mesh", "istio-system", "  tracing: [{providers: [{name: otel}]}]\n")).config
    snapshot = compile_snapshot(config, ProxyIdentity(namespace="default"), "1")
    dumped = dump_snapshot(snapshot)["telemetry"]
    assert dumped["tracing"]["provider"]["headers"] == [["authorization", REDACTED]]
    assert dump_snapshot(snapshot, include_secrets=True)["telemetry"]["tracing"]["provider"]["headers"] == [
        ["authorization", "secret"]]
