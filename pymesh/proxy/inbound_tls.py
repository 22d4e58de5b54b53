"""Mutual TLS on inbound connections, as Istio's inbound listener does it: the port's
PeerAuthentication mode decides what a connection may be (pymesh.routing.peer_authn).

- STRICT: only TLS with a client certificate that chains to the mesh roots (TLS 1.2 at least,
  1.3 preferred). Anything else is reset, as Envoy does when no filter chain matches.
- PERMISSIVE: the first bytes decide (pymesh.http.tls_hello, as Envoy's tls_inspector): a TLS
  ClientHello is terminated as under STRICT, anything else (or nothing within the sniff window:
  server-first protocols) is served as plaintext.
- DISABLE: plaintext only; the gate is not even installed (TLS bytes pass to the app as TCP).

`MtlsGate` is a connection's first protocol on such a port. Termination uses the event loop's
own TLS protocol (uvloop's, compiled; asyncio's elsewhere), started by hand instead of through
`loop.start_tls` so that the bytes already read to decide are fed to it. Once the handshake is
done the decrypted stream goes to the same HTTP/1.1, HTTP/2 and TCP handlers as plaintext, with
the ConnectionInfo's TLS facts filled in; ALPN says which (see `codec_for`): the client sidecar
offers `istio-h2` for HTTP (HTTP/2 inside, whatever the app spoke) and `istio-peer-exchange`,
`istio` for TCP.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from typing import Callable

from cryptography import x509

from pymesh.http import tls_hello
from pymesh.proxy.http1 import DownstreamH1
from pymesh.proxy.http2 import DownstreamH2
from pymesh.proxy.sockets import reset
from pymesh.proxy.tcp import TcpProxy
from pymesh.security.identity import spiffe_id_of

try:  # uvloop's TLS protocol is Cython, several times cheaper per record than asyncio's
    import uvloop
    from uvloop.loop import SSLProtocol as _UvSSLProtocol
except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio's works the same
    uvloop = None
from asyncio.sslproto import SSLProtocol as _AsyncioSSLProtocol

log = logging.getLogger("pymesh.proxy.tls")

STRICT, PERMISSIVE, DISABLE = "STRICT", "PERMISSIVE", "DISABLE"
# What the server offers, in preference order: Istio's mesh protocols first, then the plain ones
# so a non-mesh client with a mesh certificate (curl --cert, openssl s_client) works too.
# The server picks the first of these the client offers: an Istio sidecar offers
# [istio-peer-exchange, istio, h2] for HTTP/2 (Istio's ALPNInMeshH2WithMxc), so h2 and http/1.1
# come before the names that only ask for sniffing, or it would get istio-peer-exchange.
SERVER_ALPN = ("istio-h2", "istio-http/1.1", "istio-http/1.0", "h2", "http/1.1", "istio-peer-exchange", "istio")
H2, HTTP1 = "h2", "http1"
_CODECS = {"istio-h2": H2, "h2": H2, "istio-http/1.1": HTTP1, "istio-http/1.0": HTTP1, "http/1.1": HTTP1}
PERMISSIVE_SNIFF_TIMEOUT = 0.1  # as the capture sniffer: a silent client is plaintext (server-first)
STRICT_HELLO_TIMEOUT = 10.0  # a ClientHello not whole by then: refused (STRICT), plaintext (PERMISSIVE)
HANDSHAKE_TIMEOUT = 10.0


def codec_for(alpn: str | None) -> str | None:
    """The handler the negotiated ALPN asks for: H2, HTTP1, or None (istio, istio-peer-exchange,
    nothing: sniff the decrypted stream as a plaintext one would be)."""
    return _CODECS.get(alpn or "")


class TlsFacts:
    """What a finished handshake established, copied into each handler's ConnectionInfo."""

    __slots__ = ("sni", "alpn", "version", "peer_identity", "local_identity", "forwarded_client_cert")

    def __init__(self, ssl_object, local_identity: str | None) -> None:
        der = ssl_object.getpeercert(True)  # verified by the handshake (CERT_REQUIRED)
        cert = x509.load_der_x509_certificate(der) if der else None
        peer = spiffe_id_of(cert) if cert is not None else None
        self.sni = getattr(ssl_object, "_pymesh_sni", None)
        self.alpn = ssl_object.selected_alpn_protocol()
        self.version = ssl_object.version()
        self.peer_identity = peer.uri if peer is not None else None
        self.local_identity = local_identity
        self.forwarded_client_cert = forwarded_client_cert(der, cert, self.peer_identity, local_identity)

    def fill(self, info) -> None:
        info.tls = True
        info.sni = self.sni
        info.alpn = self.alpn
        info.tls_version = self.version
        info.peer_identity = self.peer_identity
        info.local_identity = self.local_identity
        info.forwarded_client_cert = self.forwarded_client_cert
        info.mesh_h2 = self.alpn == "istio-h2"


def forwarded_client_cert(der: bytes | None, cert: x509.Certificate | None, peer_uri: str | None,
                          local_uri: str | None) -> bytes | None:
    """Istio's x-forwarded-client-cert towards the app (Envoy's SANITIZE_SET with subject, URI and
    DNS details): `By=<our URI>;Hash=<SHA-256 of the client certificate>;Subject="<its subject>";
    URI=<its SPIFFE URI>;DNS=<each DNS SAN>`, for the client certificate `cert` (`der` encoded;
    a gateway's MUTUAL clients have DNS names, mesh workloads none). Made once per connection."""
    if not der or cert is None:
        return None
    subject = cert.subject.rfc4514_string().replace('"', '\\"')
    parts = []
    if local_uri:
        parts.append(f"By={local_uri}")
    parts.append(f"Hash={hashlib.sha256(der).hexdigest()}")
    parts.append(f'Subject="{subject}"')
    if peer_uri:
        parts.append(f"URI={peer_uri}")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        parts.extend(f"DNS={name}" for name in sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return ";".join(parts).encode("latin-1", "replace")


def _remember_sni(ssl_object, server_name, context) -> None:
    ssl_object._pymesh_sni = server_name  # read once the handshake is done (TlsFacts)


class InboundTls:
    """One worker's inbound mTLS: the server context of the current certificate (with the mesh
    ALPN list and the SNI hook), and the listener stats handshakes are counted in."""

    def __init__(self, certs, listener_stats: Callable[[object], dict]) -> None:
        self.certs = certs  # a pymesh.proxy.certs.CertificateStore, or None: no certificate at all
        self.listener_stats = listener_stats
        self._hooked: ssl.SSLContext | None = None

    def server_context(self) -> ssl.SSLContext | None:
        """None while there is no valid certificate: the connection is then refused."""
        if self.certs is None:
            return None
        context = self.certs.server_context(SERVER_ALPN)
        if context is not None and context is not self._hooked:
            context.sni_callback = _remember_sni
            self._hooked = context
        return context

    def local_identity(self) -> str | None:
        cert = self.certs.current if self.certs is not None else None
        return cert.identity.uri if cert is not None else None


class MtlsGate(asyncio.Protocol):
    """A STRICT or PERMISSIVE port's first protocol: reads just enough to tell TLS from
    plaintext, then hands the connection over: to `plain(silent)` (PERMISSIVE plaintext; `silent`:
    the client said nothing within the sniff window), or through a TLS handshake to
    `secure(facts)`. Each returns the protocol that serves the rest, not yet
    connected; the gate connects it and replays what it read."""

    def __init__(self, runtime, listener, mode: str, plain: Callable[[bool], asyncio.Protocol],
                 secure: Callable[[TlsFacts], asyncio.Protocol | None]) -> None:
        self.runtime = runtime
        self.tls: InboundTls = runtime.inbound_tls
        self.listener = listener
        self.mode = mode
        self.plain = plain
        self.secure = secure
        self.transport = None
        self.buffer = b""
        self.timer = None
        self.done = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        wait = PERMISSIVE_SNIFF_TIMEOUT if self.mode == PERMISSIVE else STRICT_HELLO_TIMEOUT
        self.timer = self.runtime.loop.call_later(wait, self._silent)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        verdict = tls_hello.inspect(self.buffer)
        if verdict is tls_hello.NEED_MORE:
            if self.mode == PERMISSIVE and len(self.buffer) == len(data):
                # the client spoke first, so it is not server-first: the rest of a hello split
                # over packets gets the hello's time, not the sniff window's
                self._stop_timer()
                self.timer = self.runtime.loop.call_later(STRICT_HELLO_TIMEOUT, self._silent)
            return
        self._stop_timer()
        if isinstance(verdict, tls_hello.ClientHello):
            self._terminate()
        elif isinstance(verdict, tls_hello.Malformed) and verdict.oversize:
            self._refuse("no_filter_chain_match")  # Envoy's tls_inspector closes these
        elif self.mode == PERMISSIVE:  # not TLS, or a hello that does not parse: plaintext
            self._become(self.plain(False), self.transport, self.buffer)
        else:
            self._refuse("no_filter_chain_match")

    def eof_received(self):
        self._stop_timer()
        return False

    def connection_lost(self, exc) -> None:
        self._stop_timer()

    def _silent(self) -> None:
        """No whole hello in time: plaintext under PERMISSIVE, a server-first protocol when the
        client said nothing, else what it did send, replayed."""
        self.timer = None
        if self.mode == PERMISSIVE:
            self._become(self.plain(not self.buffer), self.transport, self.buffer)
        else:
            self._refuse("no_filter_chain_match")

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _refuse(self, stat: str) -> None:
        self.done = True
        self.tls.listener_stats(self.listener)[stat] += 1
        reset(self.transport)

    def _become(self, protocol, transport, data: bytes) -> None:
        self.done = True
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data and not transport.is_closing():
            protocol.data_received(data)

    def _terminate(self) -> None:
        context = self.tls.server_context()
        if context is None:
            log.warning("inbound TLS on port %d refused: no valid workload certificate", self.listener.port)
            return self._refuse("ssl.no_workload_certificate")
        transport, data = self.transport, self.buffer
        self.buffer = b""
        self.done = True
        terminate(self.runtime.loop, transport, context, data, self.connected, self._handshake_done)

    def _handshake_done(self, waiter: asyncio.Future) -> None:
        error = None if waiter.cancelled() else waiter.exception()
        stats = self.tls.listener_stats(self.listener)
        if error is None:
            stats["ssl.handshake"] += 1
            return
        stats[failure_stat(error)] += 1
        log.debug("inbound TLS handshake on port %d failed: %s", self.listener.port, error)

    def connected(self, tls_transport) -> None:
        """The handshake is done: the handler for what ALPN and the listener say comes next."""
        facts = TlsFacts(tls_transport.get_extra_info("ssl_object"), self.tls.local_identity())
        protocol = self.secure(facts)
        if protocol is None:
            tls_transport.abort()
            return
        self._become(protocol, tls_transport, b"")


def terminate(loop, transport, context: ssl.SSLContext, data: bytes, connected: Callable[[object], None],
              done: Callable[[asyncio.Future], None]) -> None:
    """Serve TLS on an accepted `transport` with `context`, the loop's own TLS protocol fed the
    `data` already read from it: `connected(tls_transport)` once the handshake is done (it
    installs the handler), `done(waiter)` with the handshake's outcome either way."""
    waiter = loop.create_future()
    waiter.add_done_callback(done)
    kind = _UvSSLProtocol if uvloop is not None and isinstance(loop, uvloop.Loop) else _AsyncioSSLProtocol
    tls = kind(loop, _Handshake(connected), context, waiter, server_side=True,
               ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
    transport.set_protocol(tls)
    tls.connection_made(transport)
    _feed(tls, data)


class _Handshake(asyncio.Protocol):
    """The TLS protocol's first application protocol: it only learns that the handshake is done."""

    def __init__(self, connected: Callable[[object], None]) -> None:
        self.connected = connected

    def connection_made(self, transport) -> None:
        self.connected(transport)

    def data_received(self, data: bytes) -> None:  # not reached: the handler replaced this first
        raise AssertionError("data before the handler was installed")

    def connection_lost(self, exc) -> None:
        pass


def _feed(protocol, data: bytes) -> None:
    """Give a buffered protocol bytes read before it was installed."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


def failure_stat(error: BaseException) -> str:
    """Envoy's name for why a handshake failed."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "ssl.fail_verify_error"
    reason = getattr(error, "reason", "") or ""
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"):
        return "ssl.fail_verify_no_cert"
    if isinstance(error, ssl.SSLError) and "CERTIFICATE" in reason:
        return "ssl.fail_verify_error"
    return "ssl.connection_error"


def secured_handler(runtime, listener, facts: TlsFacts, original_destination=None, tcp_target=None):
    """The handler of a terminated connection on an HTTP or TCP listener: TCP listeners stay TCP
    whatever ALPN said (as Istio's inbound TCP filter chains); HTTP ones speak HTTP/2 when ALPN
    chose it, else HTTP/1.1 (which still takes the HTTP/2 preface). Its ConnectionInfo carries
    the TLS facts."""
    if listener.route_table is None:
        handler = TcpProxy(runtime, listener, target=tcp_target, original_destination=original_destination)
    elif codec_for(facts.alpn) == H2:
        handler = DownstreamH2(runtime, listener)
        handler.info.original_destination = original_destination
    else:
        handler = DownstreamH1(runtime, listener, original_destination=original_destination)
    facts.fill(handler.info)
    return handler
