"""What the admin port says of the workload certificate: `/certs` in Envoy's JSON shape, and the
readiness problem a STRICT port without a valid certificate is. Pure: the caller passes the
certificate and the time; never a key (WorkloadCertificate.key_pem is not read here)."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from pymesh.routing.peer_authn import PeerAuthnPolicy
from pymesh.security.ca import WorkloadCertificate, load_certs

INLINE = "<inline>"  # Envoy's path for certificates that did not come from a file


def certs_dump(cert: WorkloadCertificate | None, now: datetime, chain_path: str = INLINE,
               roots_path: str = INLINE) -> dict:
    """Envoy's /certs: one entry with the workload chain (leaf first) and the trusted roots."""
    if cert is None:
        return {"certificates": []}
    return {"certificates": [{
        "cert_chain": [_details(c, chain_path, now) for c in load_certs(cert.chain_pem)],
        "ca_cert": [_details(c, roots_path, now) for c in load_certs(cert.roots_pem)],
    }]}


def _details(cert: x509.Certificate, path: str, now: datetime) -> dict:
    """Envoy's CertificateDetails: serial in hex, SANs, whole days left (0 once expired), and
    the validity period as RFC 3339 times."""
    left = cert.not_valid_after_utc - now
    return {
        "path": path,
        "serial_number": format(cert.serial_number, "x"),
        "subject_alt_names": _sans(cert),
        "days_until_expiration": str(max(0, left.days)),
        "valid_from": _time(cert.not_valid_before_utc),
        "expiration_time": _time(cert.not_valid_after_utc),
    }


def _sans(cert: x509.Certificate) -> list[dict]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [{"uri": uri} for uri in names.get_values_for_type(x509.UniformResourceIdentifier)]
    out += [{"dns": dns} for dns in names.get_values_for_type(x509.DNSName)]
    return out


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def mtls_readiness(policy: PeerAuthnPolicy, cert: WorkloadCertificate | None, now: datetime,
                   why: str | None = None) -> str | None:
    """Why the proxy is not ready for its mTLS policy, or None: a STRICT port accepts nothing
    without a valid certificate. `why`: the certificate source's last error, if any."""
    if not policy.any_strict:
        return None
    if cert is None:
        reason = "STRICT mTLS ports but no workload certificate"
    elif cert.expired(now):
        reason = f"STRICT mTLS ports but the workload certificate expired at {_time(cert.not_after)}"
    else:
        return None
    return f"{reason} ({why})" if why else reason
