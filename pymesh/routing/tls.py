"""A cluster's upstream TLS from the DestinationRule's merged `tls` (pymesh.routing.policy), as
Istio's cluster builder does (pilot's buildUpstreamClusterTLSContext and auto mTLS):

- DISABLE, or no `tls` with no sidecar endpoint: plaintext.
- SIMPLE / MUTUAL: `sni` as given, else the request's host (auto SNI); `subjectAltNames` as given,
  else the request's host is verified when SNI is automatic (auto SAN validation, which wins over
  the ServiceEntry's names in Envoy), else the ServiceEntry's `subjectAltNames`.
- ISTIO_MUTUAL: SNI `outbound_.<port>_.<subset>_.<host>` unless `sni` is set; the server must carry
  one of `subjectAltNames`; without them, one of the ServiceEntry's `subjectAltNames` or a SPIFFE
  ID of one of the destination's service accounts (Istio's SANs for the service); with neither,
  any identity of the mesh's trust domain.
- No `tls` at all (Istio's enableAutoMtls): ISTIO_MUTUAL, the same way, to the endpoints labelled
  security.istio.io/tlsMode=istio only; the others get plaintext.
"""

from __future__ import annotations

from typing import Iterable

from pymesh.api import model
from pymesh.routing.snapshot import TLS_MODE_ISTIO, TLS_MODE_LABEL, Endpoint, UpstreamTls

AUTO = model.ClientTLSSettings(mode="ISTIO_MUTUAL")


def istio_sni(port: int, subset: str, host: str) -> str:
    """Istio's SNI for mesh mTLS (model.BuildDNSSrvSubsetKey): the receiving sidecar reads the
    destination service from it."""
    return f"outbound_.{port}_.{subset}_.{host}"


def is_sidecar(endpoint: Endpoint) -> bool:
    return endpoint.labels.get(TLS_MODE_LABEL) == TLS_MODE_ISTIO


def service_accounts(endpoints: Iterable[Endpoint]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(e.namespace, e.service_account) for e in endpoints if e.service_account}))


def compile_tls(settings: model.ClientTLSSettings | None, port: int, subset: str, host: str,
                endpoints: tuple[Endpoint, ...], service_endpoints: tuple[Endpoint, ...],
                service_sans: tuple[str, ...] = (), mesh_external: bool = False,
                ) -> tuple[UpstreamTls | None, UpstreamTls | None]:
    """(the cluster's tls, its auto mTLS): at most one is set. `service_endpoints`: every
    endpoint of the service port, whose service accounts ISTIO_MUTUAL accepts; `service_sans`:
    the ServiceEntry's subjectAltNames. As Istio (buildUpstreamTLSSettings), a MESH_EXTERNAL
    service never gets auto mTLS, whatever its endpoints' labels: it is outside the mesh."""
    if settings is None:
        if mesh_external or not any(is_sidecar(e) for e in endpoints):
            return None, None
        return None, UpstreamTls("ISTIO_MUTUAL", AUTO, istio_sni(port, subset, host), service_sans,
                                 service_accounts(service_endpoints), auto=True)
    if settings.mode == "DISABLE":
        return None, None
    sans = settings.subject_alt_names
    if settings.mode == "ISTIO_MUTUAL":
        return UpstreamTls("ISTIO_MUTUAL", settings, settings.sni or istio_sni(port, subset, host), sans or service_sans,
                           () if sans else service_accounts(service_endpoints)), None
    return UpstreamTls(settings.mode, settings, settings.sni, sans or (service_sans if settings.sni else ())), None
