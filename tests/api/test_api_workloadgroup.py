"""WorkloadGroup and ProxyConfig are read and validated as Istio's ValidateWorkloadGroup,
ValidateProxyConfig and CRD schemas do (the examples: istio/api workload_group.proto and
proxy_config.proto, istio/istio pkg/config/validation/testdata/crds/{workloadgroup,proxyconfig}-*.yaml)."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.api.load import load_text


def load(kind: str, spec: str | None, api: str = "networking.istio.io/v1beta1"):
    body = "" if spec is None else f"spec:\n{spec}"
    return load_text(f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x, namespace: bookinfo}}\n{body}", "r.yaml")


def errors(kind: str, spec: str | None) -> list[str]:
    return [f"{e.line} {e.path}: {e.message}" for e in load(kind, spec).errors]


PROTO_EXAMPLE = """\
  metadata:
    labels:
      app.kubernetes.io/name: reviews
      app.kubernetes.io/version: "1.3.4"
  template:
    ports:
      grpc: 3550
      http: 8080
    serviceAccount: default
  probe:
    initialDelaySeconds: 5
    timeoutSeconds: 3
    periodSeconds: 4
    successThreshold: 3
    failureThreshold: 3
    httpGet:
     path: /foo/bar
     host: 127.0.0.1
     port: 3100
     scheme: HTTPS
     httpHeaders:
     - name: Lit-Header
       value: Im-The-Best
"""


@pytest.mark.parametrize("api", ["networking.istio.io/v1", "networking.istio.io/v1beta1",
                                 "networking.istio.io/v1alpha3"])
def test_the_proto_example_loads(api):
    result = load("WorkloadGroup", PROTO_EXAMPLE, api)
    assert result.ok, result.errors
    (group,) = result.config.workload_groups
    assert group.labels == {"app.kubernetes.io/name": "reviews", "app.kubernetes.io/version": "1.3.4"}
    assert group.template == m.WorkloadEntrySpec(address="", ports={"grpc": 3550, "http": 8080},
                                                 service_account="default")
    assert group.probe == m.ReadinessProbe(
        initial_delay_seconds=5, timeout_seconds=3, period_seconds=4, success_threshold=3, failure_threshold=3,
        http_get=m.HTTPHealthCheck(port=3100, path="/foo/bar", host="127.0.0.1", scheme="HTTPS",
                                   headers=(m.HTTPHeader("Lit-Header", "Im-The-Best"),)))


VALID_GROUPS = [  # istio/istio testdata/crds/workloadgroup-valid.yaml, and the docs' VM task
    """\
  metadata:
    labels: {foo: bar}
    annotations: {foo: bar}
  probe:
    failureThreshold: 2
    initialDelaySeconds: 1
    periodSeconds: 1
    successThreshold: 1
    timeoutSeconds: 1
    httpGet: {port: 8080, host: "bar", scheme: HTTPS, path: /bar, httpHeaders: [{name: foo, value: bar}]}
  template:
    serviceAccount: sa
    network: net
    labels: {app: app}
    ports: {"http": 1}
    weight: 2
    locality: foo/bar/baz
""",
    "  probe:\n    tcpSocket: {port: 8080}\n  template: {serviceAccount: sa, network: net}\n",
    "  template: {}\n",
    "  metadata: {labels: {app: helloworld}}\n  template: {serviceAccount: default, network: ''}\n",
    "  template: {serviceAccount: sa}\n  probe:\n    exec: {command: [cat, /tmp/healthy]}\n",
    "  template: {address: 10.0.0.1}\n",  # Istio ignores it: the registering proxy's address is used
]


@pytest.mark.parametrize("spec", VALID_GROUPS)
def test_valid_groups_load(spec):
    assert errors("WorkloadGroup", spec) == []


def test_probe_defaults_are_kubernetes_ones():
    (group,) = load("WorkloadGroup", "  template: {}\n  probe: {tcpSocket: {port: 1}}\n").config.workload_groups
    assert (group.probe.timeout_seconds, group.probe.period_seconds, group.probe.success_threshold,
            group.probe.failure_threshold, group.probe.initial_delay_seconds) == (1, 10, 1, 3, 0)
    assert group.probe.tcp_socket == m.TCPHealthCheck(port=1)


@pytest.mark.parametrize("spec, expected", [
    (None, ["1 spec.template: required field is missing"]),  # Istio: 'spec: Required value'
    ("  probe: {tcpSocket: {port: 8080}}\n", ["4 spec.template: required field is missing"]),
    ("  probe:\n    tcpSocket:\n      port: 65536\n  template: {serviceAccount: sa, network: net}\n",
     ["7 spec.probe.tcpSocket.port: must be between 1 and 65535, got 65536"]),
    ("  probe:\n    httpGet:\n      httpHeaders:\n        - name: \"**\"\n      port: 80\n  template: {}\n",
     ["8 spec.probe.httpGet.httpHeaders[0].name: header name '**' is invalid (letters, digits, '-' and '_')"]),
    ("  template: {}\n  probe: {periodSeconds: 5}\n",
     ["6 spec.probe: the probe needs one of httpGet, tcpSocket, exec"]),
    ("  template: {}\n  probe: {tcpSocket: {port: 1}, exec: {command: ['true']}}\n",
     ["6 spec.probe.exec: only one of httpGet, tcpSocket, exec may be set, not tcpSocket and exec"]),
    ("  template: {}\n  probe: {periodSeconds: -1, tcpSocket: {port: 1}}\n",
     ["6 spec.probe.periodSeconds: must be between 0 and 2147483647, got -1"]),
    ("  template: {}\n  probe: {failureThreshold: -3, tcpSocket: {port: 1}}\n",
     ["6 spec.probe.failureThreshold: must be between 0 and 2147483647, got -3"]),
    ("  template: {}\n  probe: {exec: {command: []}}\n", ["6 spec.probe.exec.command: must not be empty"]),
    ("  template: {}\n  probe: {httpGet: {path: /}}\n", ["6 spec.probe.httpGet.port: required field is missing"]),
    ("  template: {}\n  probe: {httpGet: {port: 80, scheme: https}}\n",
     ["6 spec.probe.httpGet.scheme: scheme 'https' is not valid (expected HTTP or HTTPS)"]),
    ("  metadata: {labels: {'': bar}}\n  template: {}\n",
     ["5 spec.metadata.labels[]: label key '' is invalid (letters, digits, '-', '_' and '.', at most 63)"]),
    ("  template: {}\n  probe: {httpGet: {port: 80, path: \"/a b\\r\\nx: y\"}}\n",
     ["6 spec.probe.httpGet.path: path '/a b\\r\\nx: y' contains spaces or control characters"]),
    ("  template: {}\n  probe: {tcpSocket: {port: 80, host: 'a b'}}\n",
     ["6 spec.probe.tcpSocket.host: host 'a b' is not an IP address or a DNS name"]),
    ("  template: {ports: {http: 0}}\n", ["5 spec.template.ports[http]: must be between 1 and 65535, got 0"]),
    ("  template: {serviceAccount: Not_A_Name}\n",
     ["5 spec.template.serviceAccount: 'Not_A_Name' is not a valid name (lower-case DNS name: letters, digits, '-' and '.')"]),
    ("  template: {}\n  selector: {}\n", ["6 spec.selector: unknown field"]),
])
def test_invalid_groups_are_rejected_with_the_field_path(spec, expected):
    assert errors("WorkloadGroup", spec) == expected


def test_proxy_config_loads():
    result = load("ProxyConfig", "  concurrency: 1\n  selector: {matchLabels: {foo: bar}}\n"
                                 "  image: {imageType: foo}\n  environmentVariables: {foo: baz}\n")
    assert result.ok, result.errors
    assert result.config.proxy_configs == (m.ProxyConfig(
        metadata=m.Metadata(name="x", namespace="bookinfo"), selector={"foo": "bar"}, concurrency=1,
        environment_variables={"foo": "baz"}, image_type="foo"),)


@pytest.mark.parametrize("spec, concurrency, selector", [
    ("  selector: {matchLabels: {}}\n", None, {}),  # "silly but valid" (Istio's testdata)
    ("  concurrency: 0\n", 0, None),  # 0: one worker per CPU
    (None, None, None),
])
def test_valid_proxy_configs(spec, concurrency, selector):
    result = load("ProxyConfig", spec)
    assert result.ok, result.errors
    (config,) = result.config.proxy_configs
    assert (config.concurrency, config.selector) == (concurrency, selector)


@pytest.mark.parametrize("spec, expected", [
    ("  concurrency: -1\n", ["5 spec.concurrency: must be between 0 and 2147483647, got -1"]),
    ("  selector:\n    matchLabels:\n      \"\": bar\n",
     ["7 spec.selector.matchLabels[]: label key '' is invalid (letters, digits, '-', '_' and '.', at most 63)"]),
    ("  concurrency: two\n", ['5 spec.concurrency: expected an integer, got "two"']),
    ("  image: {imageType: distroless, tag: x}\n", ["5 spec.image.tag: unknown field"]),
    # an Istio field (a waypoint's), known but not implemented
    ("  targetRef: {kind: Gateway, name: waypoint, group: gateway.networking.k8s.io}\n",
     ["5 spec.targetRef: field not supported by pymesh yet"]),
])
def test_invalid_proxy_configs(spec, expected):
    assert errors("ProxyConfig", spec) == expected


def test_proxy_config_is_v1beta1_only():
    assert [e.message for e in load("ProxyConfig", "  concurrency: 2\n", "networking.istio.io/v1").errors] == [
        "apiVersion networking.istio.io/v1 is not valid for ProxyConfig (expected networking.istio.io/v1beta1)"]
