"""RequestAuthentication's validation, as Istio's ValidateRequestAuthentication: each problem is
reported at its field path, and a valid resource reads into the model."""

from __future__ import annotations

import pytest

from pymesh.api.load import load_text

HEAD = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
"""


def errors(spec: str) -> list[str]:
    return [f"{e.line} {e.path}: {e.message}" for e in load_text(HEAD + spec, "ra.yaml").errors]


def test_both_api_versions_and_a_full_rule_read():
    for version in ("v1", "v1beta1"):
        result = load_text(HEAD.replace("/v1\n", f"/{version}\n") + """\
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: issuer-foo
    audiences: [a, b]
    jwksUri: https://example.com:8443/jwks.json
    fromHeaders: [{name: X-Token, prefix: "Bearer "}]
    fromParams: [tok]
    fromCookies: [session]
    outputPayloadToHeader: X-Payload
    outputClaimToHeaders: [{header: X-Sub, claim: sub}]
    forwardOriginalToken: true
    timeout: 1500ms
""")
        assert result.ok, result.errors
        (ra,) = result.config.request_authentications
        (rule,) = ra.jwt_rules
        assert ra.selector == {"app": "httpbin"}
        assert (rule.from_headers[0].name, rule.output_payload_to_header, rule.output_claim_to_headers[0].header) == (
            "x-token", "x-payload", "x-sub")
        assert (rule.audiences, rule.timeout, rule.forward_original_token) == (("a", "b"), 1.5, True)


def test_jwks_uri_under_its_proto_name_reads_as_jwksUri():
    (ra,) = load_text(HEAD + "  jwtRules: [{issuer: i, jwks_uri: 'https://k/keys'}]\n", "ra.yaml").config.request_authentications
    assert ra.jwt_rules[0].jwks_uri == "https://k/keys"


def test_an_empty_spec_is_valid_and_applies_no_rule():
    (ra,) = load_text(HEAD + "  {}\n", "ra.yaml").config.request_authentications
    assert ra.jwt_rules == () and ra.selector is None


@pytest.mark.parametrize("spec, expected", [
    ("  jwtRules: [{audiences: [a]}]\n", ["5 spec.jwtRules[0].issuer: issuer or jwksUri must be non-empty string"]),
    ("  jwtRules: [{jwksUri: 'https://k/j'}]\n", []),  # Istio allows an issuer-less rule with a jwksUri
    ("  jwtRules: [{issuer: i, audiences: ['']}]\n", ["5 spec.jwtRules[0].audiences[0]: audience must be non-empty string"]),
    ("  jwtRules: [{issuer: i, jwksUri: 'ftp://k/j'}]\n",
     ["5 spec.jwtRules[0].jwksUri: jwksUri 'ftp://k/j': URI scheme 'ftp' is not supported (http or https)"]),
    ("  jwtRules: [{issuer: i, jwksUri: 'keys.json'}]\n",
     ["5 spec.jwtRules[0].jwksUri: jwksUri 'keys.json': URI scheme '(none)' is not supported (http or https)"]),
    ("  jwtRules: [{issuer: i, jwksUri: 'https://k:99999/j'}]\n",
     ["5 spec.jwtRules[0].jwksUri: jwksUri 'https://k:99999/j' is not a valid URL: Port out of range 0-65535"]),
    ("  jwtRules: [{issuer: i, jwks: '{\"keys\": 1}'}]\n",
     ["5 spec.jwtRules[0].jwks: jwks parse error: [keys] in Jwks is not an array"]),
    ("  jwtRules: [{issuer: i, jwks: 'not json'}]\n", ["5 spec.jwtRules[0].jwks: jwks parse error: Jwks is an invalid JSON"]),
    ("  jwtRules: [{issuer: i, fromHeaders: [{prefix: x}]}]\n", ["5 spec.jwtRules[0].fromHeaders[0].name: required field is missing"]),
    ("  jwtRules: [{issuer: i, fromHeaders: [{name: 'bad name'}]}]\n",
     ["5 spec.jwtRules[0].fromHeaders[0].name: 'bad name' is not a valid header name"]),
    ("  jwtRules: [{issuer: i, fromParams: ['']}]\n", ["5 spec.jwtRules[0].fromParams[0]: location query must be non-empty string"]),
    ("  jwtRules: [{issuer: i, outputClaimToHeaders: [{header: ':authority', claim: sub}]}]\n",
     ["5 spec.jwtRules[0].outputClaimToHeaders[0].header: ':authority' is not a valid header name"]),
    ("  jwtRules: [{issuer: i, outputClaimToHeaders: [{header: Host, claim: sub}]}]\n",
     ["5 spec.jwtRules[0].outputClaimToHeaders[0].header: 'Host' cannot be written from a token"]),
    ("  jwtRules: [{issuer: i, outputClaimToHeaders: [{header: x-a}]}]\n",
     ["5 spec.jwtRules[0].outputClaimToHeaders[0].claim: required field is missing"]),
    ("  jwtRules: [{issuer: i, timeout: 0s}]\n", ["5 spec.jwtRules[0].timeout: duration must be at least 1ms"]),
    ("  jwtRules: [{issuer: i, spaceDelimitedClaims: [roles, '']}]\n",
     ["5 spec.jwtRules[0].spaceDelimitedClaims[1]: must not be empty"]),
    ("  jwtRules: [{issuer: i, presence: OPTIONAL}]\n",
     ["5 spec.jwtRules[0].presence: field not supported by pymesh yet"]),
    ("  jwtRules: [{issuer: i, jwksUrl: x}]\n", ['5 spec.jwtRules[0].jwksUrl: unknown field (did you mean "jwksUri"?)']),
    # Istio's validatePolicyTargetReference, as for AuthorizationPolicy (its CRD tests
    # pkg/config/validation/testdata/crds/reqauth-invalid.yaml): a kind Istio binds, no other namespace.
    ("  targetRef: {group: '', kind: Service, name: foo, namespace: bar}\n",
     ["5 spec.targetRef.namespace: targetRef namespace bar must be empty or the policy's namespace (foo)"]),
    ("  targetRef: {group: '__', kind: Service, name: foo}\n",
     ["5 spec.targetRef.kind: targetRef __/Service is not supported (expected one of core/Service, "
      "gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/GatewayClass, networking.istio.io/ServiceEntry)"]),
    ("  targetRefs:\n  - {kind: Service, name: a, namespace: foo}\n  - {kind: Serv_ice, name: b}\n",
     ["5 spec.targetRefs[1].kind: targetRef core/Serv_ice is not supported (expected one of core/Service, "
      "gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/GatewayClass, networking.istio.io/ServiceEntry)"]),
    # Istio's CRD lists jwksUri under its proto name too: jwks_uri is the same field.
    ("  jwtRules: [{jwks_uri: 'ftp://k/j'}]\n",
     ["5 spec.jwtRules[0].jwks_uri: jwksUri 'ftp://k/j': URI scheme 'ftp' is not supported (http or https)"]),
    ("  jwtRules: [{issuer: i, jwksUri: 'https://k/j', jwks_uri: 'https://k/j'}]\n",
     ["5 spec.jwtRules[0].jwks_uri: jwks_uri is jwksUri under its proto name: set only one"]),
    ("  selector: {labels: {app: a}}\n", ['5 spec.selector.labels: unknown field (did you mean "matchLabels"?)']),
    ("  selector: {matchLabels: {app: a}}\n  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n",
     ["5 spec.selector: only one of targetRefs or workloadSelector can be set"]),
    ("  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n"
     "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n",
     ["6 spec.targetRefs: only one of targetRef or targetRefs can be set"]),
    ("  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway}]\n",
     ["5 spec.targetRefs[0].name: required field is missing"]),
])
def test_validation(spec, expected):
    assert errors(spec) == expected
