"""DestinationRule `tls` (Istio's ClientTLSSettings): how the sidecar originates TLS upstream.

Validation is Istio's ValidateTLS (pkg/config/validation), with the same messages, plus one rule
of pymesh's: ISTIO_MUTUAL uses the mesh certificate, so the file and credential fields that
Istio's API says "should be empty" with it are rejected rather than silently ignored.
"""

from __future__ import annotations

from pymesh.api import checks, model, shapes
from pymesh.api.reader import Reader, boolean, choice, message, text

MODE = choice("mode", ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"))
_FILES = (("clientCertificate", "client_certificate"), ("privateKey", "private_key"),
          ("caCertificates", "ca_certificates"), ("caCrl", "ca_crl"), ("credentialName", "credential_name"))


def _client_tls(r: Reader) -> model.ClientTLSSettings:
    fields = {attr: r.get(key, text(), "") for key, attr in _FILES}
    tls = model.ClientTLSSettings(
        mode=r.get("mode", MODE, "DISABLE"),
        subject_alt_names=r.get_list("subjectAltNames", text(checks.not_empty)),
        sni=r.get("sni", text(), ""),
        insecure_skip_verify=r.get("insecureSkipVerify", boolean, False),
        **fields,
    )
    _validate(r, tls)
    return tls


def _validate(r: Reader, tls: model.ClientTLSSettings) -> None:
    mode = tls.mode
    if mode == "ISTIO_MUTUAL":
        for key, attr in _FILES:
            if getattr(tls, attr):
                r.error(key, "must be empty with mode ISTIO_MUTUAL (it uses the mesh certificate)")
        return
    if tls.insecure_skip_verify:
        if mode == "SIMPLE" and (tls.ca_certificates or tls.credential_name or tls.subject_alt_names):
            r.error_here("cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                         "InsecureSkipVerify is set true")
        if mode == "MUTUAL" and (tls.ca_certificates or tls.subject_alt_names):
            r.error_here("cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true")
    if mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        if tls.client_certificate or tls.ca_certificates or tls.private_key or tls.ca_crl:
            r.error_here("cannot specify client certificates or CA certificate or CA CRL If credentialName is set")
        return
    if mode == "MUTUAL":
        if not tls.client_certificate:
            r.error_here("client certificate required for mutual tls")
        if not tls.private_key:
            r.error_here("private key required for mutual tls")


CLIENT_TLS = message(shapes.CLIENT_TLS_SETTINGS, _client_tls)
