"""AuthorizationPolicy's validation, as Istio's ValidateAuthorizationPolicy: each rule it has,
with the field path and line of the problem, and a full policy read into the model."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.api.load import load_text

HEAD = """\
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
"""


def errors(spec: str, head: str = HEAD) -> list[str]:
    result = load_text(head + spec, "p.yaml")
    return [f"{e.path}: {e.message}" for e in result.errors]


def test_every_field_reads_into_the_model():
    result = load_text(HEAD + """\
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
        notPrincipals: ["*/sa/admin"]
        requestPrincipals: ["iss/sub"]
        notRequestPrincipals: ["*"]
        namespaces: ["default"]
        notNamespaces: ["prod-*"]
        ipBlocks: ["10.0.0.0/8", "fd00::1"]
        notIpBlocks: ["10.1.0.0/16"]
        remoteIpBlocks: ["192.0.2.0/24"]
        notRemoteIpBlocks: ["192.0.2.7"]
    to:
    - operation:
        hosts: ["*.example.com"]
        notHosts: ["admin.example.com"]
        ports: ["8080"]
        notPorts: ["9090"]
        methods: ["GET"]
        notMethods: ["DELETE"]
        paths: ["/api/*", "/users/{*}/x"]
        notPaths: ["*.html"]
    when:
    - key: request.auth.claims[groups][0]
      values: ["a"]
    - key: request.headers[x-token]
      notValues: ["guest"]
""", "p.yaml")
    assert result.errors == []
    (policy,) = result.config.authorization_policies
    assert (policy.action, policy.selector, policy.dry_run) == ("DENY", {"app": "httpbin"}, False)
    (rule,) = policy.rules
    assert rule.sources[0] == m.AuthzSource(
        principals=("cluster.local/ns/default/sa/sleep",), not_principals=("*/sa/admin",),
        request_principals=("iss/sub",), not_request_principals=("*",), namespaces=("default",),
        not_namespaces=("prod-*",), ip_blocks=("10.0.0.0/8", "fd00::1"), not_ip_blocks=("10.1.0.0/16",),
        remote_ip_blocks=("192.0.2.0/24",), not_remote_ip_blocks=("192.0.2.7",))
    assert rule.operations[0].paths == ("/api/*", "/users/{*}/x") and rule.operations[0].ports == ("8080",)
    assert rule.when == (m.AuthzCondition("request.auth.claims[groups][0]", ("a",)),
                         m.AuthzCondition("request.headers[x-token]", (), ("guest",)))


def test_spec_empty_is_an_allow_policy_with_no_rules():
    (policy,) = load_text(HEAD + "  {}\n").config.authorization_policies
    assert (policy.action, policy.rules, policy.selector) == ("ALLOW", (), None)


def test_v1_and_dry_run():
    result = load_text(HEAD.replace("v1beta1", "v1").replace("namespace: foo}", "namespace: foo, annotations: "
                                                             "{istio.io/dry-run: 'true', other: x}}") + "  {}\n")
    (policy,) = result.config.authorization_policies
    assert policy.dry_run and policy.metadata.annotations == {"istio.io/dry-run": "true"}


@pytest.mark.parametrize("spec, expected", [
    ("  action: DENY\n", "spec.rules: DENY action without `rules` is meaningless as it will never be triggered, "
                         "add an empty rule `{}` if you want it be triggered for every request"),
    ("  action: DENY\n  rules: []\n", "spec.rules: DENY action without `rules` is meaningless as it will never be "
                                      "triggered, add an empty rule `{}` if you want it be triggered for every request"),
    ("  action: CUSTOM\n  provider: {name: x}\n", "spec.rules: CUSTOM action without `rules` is meaningless as it "
     "will never be triggered, add an empty rule `{}` if you want it be triggered for every request"),
    ("  action: CUSTOM\n  rules: [{}]\n", "spec.provider: `provider.name` must not be empty"),
    ("  action: ALLOW\n  provider: {name: x}\n", "spec.provider: `provider` must not be with non CUSTOM action, found ALLOW"),
    ("  action: REJECT\n", "spec.action: action 'REJECT' is not valid (expected ALLOW, DENY, AUDIT or CUSTOM)"),
    ("  rules: [{from: []}]\n", "spec.rules[0].from: `from` must not be empty"),
    ("  rules: [{to: []}]\n", "spec.rules[0].to: `to` must not be empty"),
    ("  rules: [{from: [{}]}]\n", "spec.rules[0].from[0]: `from.source` must not be nil"),
    ("  rules: [{to: [{}]}]\n", "spec.rules[0].to[0]: `to.operation` must not be nil"),
    ("  rules: [{from: [{source: {}}]}]\n", "spec.rules[0].from[0].source: `from.source` must not be empty"),
    ("  rules: [{to: [{operation: {}}]}]\n", "spec.rules[0].to[0].operation: `to.operation` must not be empty"),
    ("  rules: [{to: [{operation: {methods: []}}]}]\n",
     "spec.rules[0].to[0].operation: `to.operation` must not be empty"),
    ("  rules: [{from: [{source: {ipBlocks: ['10.0.0.0/33']}}]}]\n",
     "spec.rules[0].from[0].source.ipBlocks[0]: bad CIDR range (10.0.0.0/33)"),
    ("  rules: [{from: [{source: {notRemoteIpBlocks: ['1.2.3']}}]}]\n",
     "spec.rules[0].from[0].source.notRemoteIpBlocks[0]: bad IP address (1.2.3)"),
    ("  rules: [{from: [{source: {principals: ['']}}]}]\n",
     "spec.rules[0].from[0].source.principals[0]: empty value not allowed"),
    ("  rules: [{to: [{operation: {ports: ['65536']}}]}]\n",
     "spec.rules[0].to[0].operation.ports[0]: bad port (65536): must be a number between 0 and 65535"),
    ("  rules: [{to: [{operation: {notPorts: ['http']}}]}]\n",
     "spec.rules[0].to[0].operation.notPorts[0]: bad port (http): must be a number between 0 and 65535"),
    ("  rules: [{to: [{operation: {ports: [80]}}]}]\n", "spec.rules[0].to[0].operation.ports[0]: expected a string, got 80"),
    ("  rules: [{to: [{operation: {paths: ['/a/{**}/{*}']}}]}]\n",
     "spec.rules[0].to[0].operation.paths[0]: invalid or unsupported path /a/{**}/{*}: {**} is not the last operator"),
    ("  rules: [{to: [{operation: {paths: ['/a/{x}']}}]}]\n",
     "spec.rules[0].to[0].operation.paths[0]: invalid or unsupported path /a/{x}: contains '{' or '}' beyond a "
     "supported path template"),
    ("  rules: [{when: [{key: foo.bar, values: [x]}]}]\n", "spec.rules[0].when[0].key: unknown attribute: foo.bar"),
    ("  rules: [{when: [{key: 'request.headers[]', values: [x]}]}]\n",
     "spec.rules[0].when[0].key: bad key (request.headers[]): should have format a[b]"),
    ("  rules: [{when: [{key: request.auth.claims, values: [x]}]}]\n",
     "spec.rules[0].when[0].key: bad key (request.auth.claims): should have format a[b]"),
    ("  rules: [{when: [{key: destination.namespace, values: [x]}]}]\n",
     "spec.rules[0].when[0].key: attribute destination.namespace is replaced by the metadata.namespace"),
    ("  rules: [{when: [{key: 'destination.labels[app]', values: [x]}]}]\n",
     "spec.rules[0].when[0].key: attribute destination.labels[app] is replaced by the workload selector"),
    ("  rules: [{when: [{key: source.ip}]}]\n",
     "spec.rules[0].when[0]: at least one of `values` or `notValues` must be set for key source.ip"),
    ("  rules: [{when: [{key: source.ip, values: ['300.1.1.1']}]}]\n",
     "spec.rules[0].when[0].values[0]: bad IP address (300.1.1.1)"),
    ("  rules: [{when: [{key: destination.port, notValues: ['-1']}]}]\n",
     "spec.rules[0].when[0].notValues[0]: bad port (-1): must be a number between 0 and 65535"),
    ("  rules: [{when: [{values: [x]}]}]\n", "spec.rules[0].when[0].key: required field is missing"),
    ("  rules: [{from: [{source: {serviceAccounts: ['a/b/c']}}]}]\n",
     "spec.rules[0].from[0].source.serviceAccounts[0]: expected format 'serviceAccount' or "
     "'namespace/serviceAccount', found 'a/b/c'"),
    ("  rules: [{from: [{source: {serviceAccounts: ['sa*']}}]}]\n",
     "spec.rules[0].from[0].source.serviceAccounts[0]: wildcard not allowed"),
    ("  rules: [{from: [{source: {serviceAccounts: -1}}]}]\n",  # len(-1) raised TypeError out of the loader
     "spec.rules[0].from[0].source.serviceAccounts: expected a list, got -1"),
    ("  rules: [{from: [{source: {serviceAccounts: [a], namespaces: [b]}}]}]\n",
     "spec.rules[0].from[0].source: cannot set serviceAccounts with namespaces or principals"),
    ("  action: CUSTOM\n  provider: {name: x}\n  rules: [{from: [{source: {principals: [a]}}]}]\n",
     "spec.rules[0].from[0].source.principals: principals is currently not supported with CUSTOM action"),
    ("  action: CUSTOM\n  provider: {name: x}\n  rules: [{when: [{key: request.auth.principal, values: [a]}]}]\n",
     "spec.rules[0].when[0].key: request.auth.principal is currently not supported with CUSTOM action"),
    ("  selector: {matchLabels: {app: '*'}}\n", None),  # the label value check or the wildcard rule
    ("  selector: {labels: {app: a}}\n", 'spec.selector.labels: unknown field (did you mean "matchLabels"?)'),
    ("  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]\n",
     "spec.selector: only one of targetRefs or workloadSelector can be set"),
    ("  targetRefs: [{kind: Deployment, name: a}]\n",
     "spec.targetRefs[0].kind: targetRef core/Deployment is not supported (expected one of core/Service, "
     "gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/GatewayClass, networking.istio.io/ServiceEntry)"),
    ("  targetRef: {kind: Service, name: a, namespace: bar}\n",
     "spec.targetRef.namespace: targetRef namespace bar must be empty or the policy's namespace (foo)"),
    ("  targetRefs: [{kind: Service}]\n", "spec.targetRefs[0].name: required field is missing"),
    ("  rules: [{from: [{source: {principal: [a]}}]}]\n",
     'spec.rules[0].from[0].source.principal: unknown field (did you mean "principals"?)'),
])
def test_istios_validation(spec: str, expected: str | None):
    found = errors(spec)
    if expected is None:
        assert len(found) >= 1, found
    else:
        assert expected in found, found


@pytest.mark.parametrize("value, dry_run", [("true", True), ("True", True), ("1", True), ("false", False), ("F", False)])
def test_dry_run_reads_as_go_parses_a_bool(value: str, dry_run: bool):
    head = HEAD.replace("namespace: foo}", f"namespace: foo, annotations: {{istio.io/dry-run: '{value}'}}}}")
    (policy,) = load_text(head + "  {}\n").config.authorization_policies
    assert policy.dry_run is dry_run


def test_dry_run_must_be_a_boolean():
    head = HEAD.replace("namespace: foo}", "namespace: foo, annotations: {istio.io/dry-run: maybe}}")
    assert errors("  {}\n", head) == ['metadata.annotations[istio.io/dry-run]: must be "true" or "false", got "maybe"']


def test_allow_and_audit_may_have_no_rules():
    assert errors("  action: AUDIT\n") == []
    assert errors("  action: ALLOW\n  rules: []\n") == []


def test_the_control_protocol_carries_it_unchanged():
    """The control server pushes MeshConfig through the codec: a policy comes back equal."""
    from pymesh.api.codec import decode, encode

    config = load_text(HEAD.replace("namespace: foo}", "namespace: foo, annotations: {istio.io/dry-run: 'true'}}") + """\
  targetRefs: [{kind: Service, group: "", name: httpbin}]
  action: AUDIT
  rules:
  - from: [{source: {principals: [a], notIpBlocks: [10.0.0.0/8]}}]
    to: [{operation: {ports: ["80"], paths: ["/x"]}}]
    when: [{key: "request.auth.claims[a][b]", values: [c]}]
""").config
    assert config.authorization_policies
    assert decode(m.MeshConfig, encode(config)) == config
