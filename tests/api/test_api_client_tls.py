"""DestinationRule `tls` (ClientTLSSettings) at every level: each field read as Istio writes it,
and Istio's ValidateTLS rules (plus pymesh's ISTIO_MUTUAL rule) reported with the field path."""

from __future__ import annotations

import pytest

from pymesh.api import model as m
from pymesh.api.load import load_paths, load_text

HEAD = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: default}
spec:
  host: r
"""
DR = HEAD + "  trafficPolicy:\n    tls: %s\n"


def tls_of(text: str):
    result = load_text(DR % text, "dr.yaml")
    return result, (result.config.destination_rules[0].traffic_policy.tls if result.ok else None)


def test_every_field():
    result, tls = tls_of("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, "
                         "caCrl: /crl.pem, subjectAltNames: [a.example, 'spiffe://td/ns/n/sa/s'], sni: a.example}")
    assert result.ok, result.errors
    assert tls == m.ClientTLSSettings("MUTUAL", "/c.pem", "/k.pem", "/ca.pem", "/crl.pem", "",
                                      ("a.example", "spiffe://td/ns/n/sa/s"), "a.example", False)


def test_mode_defaults_to_disable_as_istios_enum():
    result, tls = tls_of("{sni: a.example}")
    assert result.ok and tls.mode == "DISABLE"


def test_levels():
    text = HEAD + """\
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: DISABLE}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: ISTIO_MUTUAL}
      portLevelSettings:
      - port: {number: 8443}
        tls: {mode: SIMPLE, insecureSkipVerify: true}
"""
    result = load_text(text, "dr.yaml")
    assert result.ok, result.errors
    rule = result.config.destination_rules[0]
    assert rule.traffic_policy.tls.mode == "SIMPLE"
    assert rule.traffic_policy.port_level_settings[0].tls.mode == "DISABLE"
    subset = rule.subsets[0].traffic_policy
    assert subset.tls.mode == "ISTIO_MUTUAL"
    assert subset.port_level_settings[0].tls == m.ClientTLSSettings("SIMPLE", insecure_skip_verify=True)


OK = [
    "{mode: SIMPLE}",  # no caCertificates: the system roots
    "{mode: SIMPLE, caCertificates: /ca.pem, subjectAltNames: [x]}",
    "{mode: SIMPLE, insecureSkipVerify: true}",
    "{mode: SIMPLE, credentialName: my-secret}",
    "{mode: MUTUAL, credentialName: my-secret}",  # the credential holds the client pair
    "{mode: MUTUAL, credentialName: my-secret, insecureSkipVerify: true}",
    "{mode: MUTUAL, clientCertificate: /c, privateKey: /k, insecureSkipVerify: true}",
    "{mode: ISTIO_MUTUAL}",
    "{mode: ISTIO_MUTUAL, sni: x, subjectAltNames: ['spiffe://cluster.local/ns/default/sa/x']}",
    "{mode: DISABLE}",
]


@pytest.mark.parametrize("text", OK)
def test_valid(text):
    result, _ = tls_of(text)
    assert result.ok, result.errors


AT = "dr.yaml:7 spec.trafficPolicy.tls"
BAD = [
    ("{mode: MUTUAL}", [f"{AT}: client certificate required for mutual tls",
                        f"{AT}: private key required for mutual tls"]),
    ("{mode: MUTUAL, clientCertificate: /c}", [f"{AT}: private key required for mutual tls"]),
    ("{mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca}",
     [f"{AT}: cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true"]),
    ("{mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [x]}",
     [f"{AT}: cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true"]),
    ("{mode: SIMPLE, insecureSkipVerify: true, credentialName: s}",
     [f"{AT}: cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true"]),
    ("{mode: MUTUAL, clientCertificate: /c, privateKey: /k, insecureSkipVerify: true, caCertificates: /ca}",
     [f"{AT}: cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true"]),
    ("{mode: SIMPLE, credentialName: s, caCertificates: /ca}",
     [f"{AT}: cannot specify client certificates or CA certificate or CA CRL If credentialName is set"]),
    ("{mode: MUTUAL, credentialName: s, caCrl: /crl}",
     [f"{AT}: cannot specify client certificates or CA certificate or CA CRL If credentialName is set"]),
    ("{mode: ISTIO_MUTUAL, clientCertificate: /c, caCertificates: /ca}",
     [f"{AT}.clientCertificate: must be empty with mode ISTIO_MUTUAL (it uses the mesh certificate)",
      f"{AT}.caCertificates: must be empty with mode ISTIO_MUTUAL (it uses the mesh certificate)"]),
    ("{mode: ISTIO_MUTUAL, credentialName: s}",
     [f"{AT}.credentialName: must be empty with mode ISTIO_MUTUAL (it uses the mesh certificate)"]),
    ("{mode: STRICT}",
     [f"{AT}.mode: mode 'STRICT' is not valid (expected DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL)"]),
    ("{mode: SIMPLE, subjectAltNames: ['']}", [f"{AT}.subjectAltNames[0]: must not be empty"]),
    ("{mode: SIMPLE, insecureSkipVerify: 'yes'}", [f'{AT}.insecureSkipVerify: expected a boolean, got "yes"']),
    ("{mode: SIMPLE, sni: 7}", [f"{AT}.sni: expected a string, got 7"]),
    ("{mode: SIMPLE, caCertficates: /ca}", None),  # misspelt: an unknown field
]


@pytest.mark.parametrize("text,errors", BAD)
def test_invalid(text, errors):
    result, _ = tls_of(text)
    messages = [str(e) for e in result.errors]
    if errors is None:
        assert len(messages) == 1 and "caCertficates: unknown field" in messages[0], messages
    else:
        assert messages == errors


def test_istios_mutual_tls_origination_with_a_workload_selector(data):
    """Istio's egress task: credentialName at a sidecar, with a workloadSelector (as published)."""
    result = load_paths([str(data / "istio_samples" / "istio.io" / "egress-mtls-origination-sidecar.yaml")])
    assert result.ok, result.errors
    rule = result.config.destination_rules[0]
    assert rule.workload_selector == {"app": "sleep"}
    assert rule.traffic_policy.port_level_settings[0].tls == m.ClientTLSSettings(
        "MUTUAL", credential_name="client-credential", sni="my-nginx.mesh-external.svc.cluster.local")


def test_workload_selector_is_match_labels():
    result = load_text(HEAD + "  workloadSelector: {labels: {app: curl}}\n", "dr.yaml")
    assert [str(e) for e in result.errors] == [
        'dr.yaml:6 spec.workloadSelector.labels: unknown field (did you mean "matchLabels"?)']
