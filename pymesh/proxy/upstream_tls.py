"""TLS origination to upstreams: one `TlsOrigin` per cluster state for its compiled `UpstreamTls`
(pymesh.routing.tls), and the `TlsTarget`s pools dial with.

- SIMPLE / MUTUAL: a context built once per (ALPN, hostname check) from the DestinationRule's
  files or its credentialName (pymesh.proxy.credentials); the system roots when caCertificates
  is not set, as Istio; no verification at all only with insecureSkipVerify, which is logged as a
  warning when the cluster is set up. ALPN `h2` or `http/1.1` by the protocol spoken upstream.
- ISTIO_MUTUAL (explicit or auto mTLS): the mesh certificate's context (pymesh.proxy.certs),
  ALPN `istio-h2, istio-peer-exchange, istio` for HTTP (spoken as HTTP/2 inside) and
  `istio-peer-exchange, istio` for TCP; after the handshake the server's SPIFFE ID is checked as
  pymesh.routing.tls describes.

A failed handshake or identity check is a `TlsFailure`, a connect failure for the router (503
UF, retried as connect-failure), counted in the cluster's ssl.* stats as Envoy counts them.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from pymesh.proxy.credentials import CredentialNotFound, CredentialResolver
from pymesh.routing.snapshot import Cluster, Endpoint, UpstreamTls
from pymesh.routing.tls import is_sidecar
from pymesh.security.identity import peer_spiffe_id
from pymesh.security.san import certificate_sans, matches_any

log = logging.getLogger("pymesh.proxy")

MESH_HTTP_ALPN = ("istio-h2", "istio-peer-exchange", "istio")
MESH_TCP_ALPN = ("istio-peer-exchange", "istio")
H2_ALPN, HTTP1_ALPN = ("h2",), ("http/1.1",)
MIN_VERSION = ssl.TLSVersion.TLSv1_2  # Envoy's default upstream minimum
MAX_TARGETS = 256  # auto SNI: targets kept per origin (one per request host)
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


class TlsFailure(ConnectionError):
    """The TLS connection could not be made, or its server is not the one wanted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # Envoy's "transport failure reason"


@dataclass(frozen=True)
class TlsEnvironment:
    """What origination needs from the proxy: its mesh certificate and its credentials."""

    certs: object | None = None  # a pymesh.proxy.certs.CertificateStore
    credentials: CredentialResolver = CredentialResolver(None)


@dataclass(frozen=True)
class TlsTarget:
    """One way of dialing: part of the pool key, so connections with another SNI or ALPN are
    never shared."""

    origin: TlsOrigin
    server_hostname: str  # the SNI sent; with check_host also the name verified
    alpn: tuple[str, ...]
    check_host: bool  # auto SAN validation: ssl verifies the certificate names server_hostname

    def context(self) -> ssl.SSLContext:
        return self.origin.context(self)

    def check(self, transport) -> None:
        self.origin.check(transport.get_extra_info("ssl_object"))

    def failure(self, error: BaseException) -> BaseException:
        return self.origin.failure(error)


class TlsOrigin:
    def __init__(self, tls: UpstreamTls, cluster: Cluster, env: TlsEnvironment, stats: dict[str, int]) -> None:
        self.tls = tls
        self.cluster = cluster
        self.env = env
        self.stats = stats
        self.mesh = tls.mode == "ISTIO_MUTUAL"
        self.insecure = tls.settings.insecure_skip_verify and not self.mesh
        self.closed = False  # its cluster state was replaced: pools dialing with it retire
        self._targets: dict[tuple, TlsTarget] = {}
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self._warned_plaintext = False
        self._load_error: str | None = None
        if self.insecure:
            log.warning("cluster %s: insecureSkipVerify is set: the upstream's certificate is NOT verified",
                        cluster.name)

    # per request or connection ----------------------------------------------------------------

    def target(self, host: str, http: bool, http2: bool) -> TlsTarget:
        """The target for a request to `host` (its authority, or "" for TCP)."""
        tls = self.tls
        if self.mesh:
            alpn, sni, check = (MESH_HTTP_ALPN if http and http2 else MESH_TCP_ALPN), tls.sni, False
        else:
            alpn = (H2_ALPN if http2 else HTTP1_ALPN) if http else ()
            sni = tls.sni or _host_only(host) or self.cluster.service_host
            check = not tls.sni and not tls.subject_alt_names and not self.insecure
        key = (sni, alpn)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            target = self._targets[key] = TlsTarget(self, sni, alpn, check)
        return target

    def usable(self) -> bool:
        """For auto mTLS: a mesh certificate to present (without one, plaintext: logged once)."""
        certs = self.env.certs
        if certs is not None and certs.valid() is not None:
            return True
        if not self._warned_plaintext:
            self._warned_plaintext = True
            log.warning("cluster %s: no valid mesh certificate (--cert-dir): plaintext to its sidecar endpoints "
                        "instead of auto mTLS", self.cluster.name)
        return False

    def context(self, target: TlsTarget) -> ssl.SSLContext:
        if self.mesh:
            context = self.env.certs.client_context(target.alpn) if self.env.certs is not None else None
            if context is None:
                self.stats["ssl.connection_error"] += 1
                raise TlsFailure("no valid mesh certificate to present (ISTIO_MUTUAL)")
            return context
        key = (target.alpn, target.check_host)
        context = self._contexts.get(key)
        if context is None:
            try:
                context = self._contexts[key] = self._build(target.alpn, target.check_host)
            except (OSError, ssl.SSLError, CredentialNotFound) as error:
                self.stats["ssl.connection_error"] += 1
                if self._load_error != str(error):  # once per distinct problem, not per request
                    self._load_error = str(error)
                    log.error("cluster %s: cannot set up TLS (%s): %s", self.cluster.name, self.tls.mode, error)
                raise TlsFailure(f"TLS_error: cannot load the TLS settings: {error}") from None
        return context

    def check(self, ssl_object) -> None:
        """After the handshake: the server's identity, where ssl could not check it."""
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        problem = None
        if self.mesh:
            problem = self._mesh_problem(der)
        elif self.tls.subject_alt_names and not self.insecure and not matches_any(certificate_sans(der or b""),
                                                                                   self.tls.subject_alt_names):
            problem = "the server's certificate matches none of subjectAltNames"
        if problem is not None:
            self.stats["ssl.fail_verify_san"] += 1
            self.stats["ssl.connection_error"] += 1
            raise TlsFailure(f"TLS_error: {problem}")
        self.stats["ssl.handshake"] += 1

    def failure(self, error: BaseException) -> BaseException:
        """A failed connect attempt, as the router sees it: TLS errors become TlsFailure."""
        stats = self.stats
        if isinstance(error, ssl.SSLCertVerificationError):
            san = error.verify_code == _HOSTNAME_MISMATCH
            stats["ssl.fail_verify_san" if san else "ssl.fail_verify_error"] += 1
            stats["ssl.connection_error"] += 1
            return TlsFailure(f"TLS_error: CERTIFICATE_VERIFY_FAILED: {error.verify_message}")
        if isinstance(error, ssl.SSLError):
            stats["ssl.connection_error"] += 1
            return TlsFailure(f"TLS_error: {getattr(error, 'reason', None) or error}")
        return error

    # building --------------------------------------------------------------------------------

    def _build(self, alpn: tuple[str, ...], check_host: bool) -> ssl.SSLContext:
        settings = self.tls.settings
        cert, key, ca, crl = settings.client_certificate, settings.private_key, settings.ca_certificates, settings.ca_crl
        if settings.credential_name:
            credential = self.env.credentials.resolve(settings.credential_name)
            cert, key, ca, crl = credential.certificate, credential.private_key, credential.ca_certificates, credential.ca_crl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = MIN_VERSION
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = check_host
            if ca:
                context.load_verify_locations(cafile=ca)
            else:
                context.load_default_certs()  # Istio: "the OS CA certificates"
            if crl:
                context.load_verify_locations(cafile=crl)
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if self.tls.mode == "MUTUAL":
            if not (cert and key):
                raise CredentialNotFound("MUTUAL needs a client certificate and key")
            context.load_cert_chain(cert, key)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context

    def _mesh_problem(self, der: bytes | None) -> str | None:
        """Why the mesh server is not the one wanted (pymesh.routing.tls has the rules), or None."""
        if not der:
            return "the server presented no certificate"
        sans, accounts = self.tls.subject_alt_names, self.tls.service_accounts
        if sans and matches_any(certificate_sans(der), sans):
            return None
        identity = peer_spiffe_id(der)
        if identity is None:
            return "the server's certificate has no SPIFFE identity"
        ours = self.env.certs.current.identity.trust_domain
        if identity.trust_domain == ours and (identity.namespace, identity.service_account) in accounts:
            return None
        if sans or accounts:
            return f"the server {identity.uri} runs none of the destination's service accounts or subjectAltNames"
        if identity.trust_domain != ours:
            return f"the server {identity.uri} is not in trust domain {ours}"
        return None


def origins(cluster: Cluster, env: TlsEnvironment, stats: dict[str, int]) -> tuple[TlsOrigin | None, TlsOrigin | None]:
    """(the cluster's own TLS, its auto mTLS) origins."""
    return (TlsOrigin(cluster.tls, cluster, env, stats) if cluster.tls is not None else None,
            TlsOrigin(cluster.auto_mtls, cluster, env, stats) if cluster.auto_mtls is not None else None)


def origin_for(own: TlsOrigin | None, auto: TlsOrigin | None, endpoint: Endpoint) -> TlsOrigin | None:
    """Which origin dials `endpoint`: the cluster's own, else auto mTLS for a sidecar endpoint
    while there is a certificate to present, else none (plaintext)."""
    if own is not None:
        return own
    if auto is not None and is_sidecar(endpoint) and auto.usable():
        return auto
    return None


def _host_only(authority: str) -> str:
    """The host of an authority: "a.example:8080" -> "a.example", "[::1]:80" -> "::1"."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    host, sep, port = authority.rpartition(":")
    return host if sep and port.isdigit() else authority
