"""TLS termination on a gateway's ports (Istio Gateway servers with tls mode SIMPLE, MUTUAL,
OPTIONAL_MUTUAL or ISTIO_MUTUAL: `Listener.tls_servers`).

A connection on such a port starts with a `GatewayTlsRouter`: it reads the ClientHello without
consuming it (as the passthrough's SniRouter, whose buffering, timeouts and counting it shares),
picks the server by SNI as Envoy's filter chain match does (exact, longest wildcard, then a "*"
server, which also takes clients sending no SNI), and terminates TLS with that server's context
(pymesh.proxy.inbound_tls.terminate: the loop's TLS protocol fed the bytes already read). A name
no terminating server serves goes to the port's PASSTHROUGH servers (`sni_routes`) if any, else
the client gets a fatal TLS alert and the connection closes.

After the handshake the server's own checks run (subjectAltNames, certificate pins; ISTIO_MUTUAL:
a SPIFFE identity of our trust domain), then the decrypted stream goes to the usual handler for
the server: HTTP/2 or HTTP/1.1 by ALPN (h2 and http/1.1 are advertised, as Istio's gateway does)
with the https scheme, or the TCP proxy for a TLS server; ConnectionInfo carries the TLS facts
(SNI, version, the client certificate's identity and x-forwarded-client-cert).

Contexts (`ServerContext`) are built when a snapshot is installed, shared by every connection,
and rebuilt by a once-a-second look at their files: a rotated certificate (or a credential
created after start) is served from the next handshake on; files that do not load keep the last
good context, logged and counted. A server whose credential never loaded refuses its own
handshakes; the port's other servers carry on (Istio's behaviour).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import replace

from pymesh.http import tls_hello
from pymesh.proxy.credentials import CredentialNotFound, CredentialResolver
from pymesh.proxy.http1 import DownstreamH1
from pymesh.proxy.inbound_tls import TlsFacts, failure_stat, secured_handler, terminate
from pymesh.proxy.polling import Poller
from pymesh.proxy.tls_passthrough import HELLO_TIMEOUT, SniRouter, hand_over, server_name_of
from pymesh.routing.sni import ServerNames
from pymesh.routing.snapshot import Listener, ServerTls, Snapshot, TlsServerChain
from pymesh.security.identity import peer_spiffe_id
from pymesh.security.server_tls import AUTO_MIN, ClientChecks, cipher_list, version_range

log = logging.getLogger("pymesh.proxy.gateway_tls")

HTTP_ALPN = ("h2", "http/1.1")  # Istio's ALPNHttp, on every terminating gateway server
MESH_TCP_ALPN = ("istio-peer-exchange", "h2", "http/1.1")  # ISTIO_MUTUAL TLS servers (ALPNDownstreamWithMxc)
WATCH_INTERVAL = 1.0
NOT_READY = "server_ssl_socket_factory.downstream_context_secrets_not_ready"  # Envoy's: no certificate yet
UPDATED = "server_ssl_socket_factory.ssl_context_update_by_sds"  # a context rebuilt from changed files
UPDATE_REJECTED = "server_ssl_socket_factory.ssl_context_update_rejected"  # changed files that did not load
_ALERT_HANDSHAKE_FAILURE, _ALERT_UNRECOGNIZED_NAME = 40, 112


def alert(description: int) -> bytes:
    """A fatal TLS alert record, sent in the clear before any ServerHello."""
    return bytes((21, 3, 3, 0, 2, 2, description))


class ServerContext:
    """One terminating server's TLS: its `ssl.SSLContext` (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, built
    from files or a credential) or the mesh certificate's (ISTIO_MUTUAL), and the client checks."""

    def __init__(self, tls: ServerTls, alpn: tuple[str, ...], credentials: CredentialResolver, certs) -> None:
        self.tls = tls
        self.alpn = alpn
        self.credentials = credentials
        self.certs = certs  # pymesh.proxy.certs.CertificateStore (ISTIO_MUTUAL)
        self.mesh = tls.mode == "ISTIO_MUTUAL"
        self.context: ssl.SSLContext | None = None
        self.error: str | None = None  # why the files last did not load
        self._seen: tuple | None = None
        settings = tls.settings
        try:
            self.checks = ClientChecks.from_settings(settings.subject_alt_names, settings.verify_certificate_spki,
                                                     settings.verify_certificate_hash)
        except ValueError as error:
            self.checks, self.error = None, str(error)

    @property
    def name(self) -> str:
        settings = self.tls.settings
        return (settings.credential_name or ",".join(settings.credential_names) or settings.server_certificate
                or self.tls.mode)

    def current(self) -> ssl.SSLContext | None:
        """The context a handshake starts with now; None: this server cannot serve yet."""
        if self.checks is None:
            return None
        if self.mesh:
            return self.certs.server_context(self.alpn) if self.certs is not None else None
        return self.context

    def refresh(self) -> str | None:
        """Rebuild when the files changed: UPDATED, UPDATE_REJECTED, or None (nothing new)."""
        if self.mesh or self.checks is None:
            return None
        try:
            files = self._files()
            seen = _fingerprint(files)
        except (CredentialNotFound, ValueError, OSError) as error:
            return self._failed(str(error), None)
        if seen == self._seen:
            return None
        try:
            context = self._build(files)
        except (OSError, ssl.SSLError, ValueError) as error:
            return self._failed(str(error), seen)
        self.context, self._seen, self.error = context, seen, None
        return UPDATED

    def client_problem(self, ssl_object) -> tuple[str, str] | None:
        """(stat, why) when the verified client may not use this server, else None."""
        der = ssl_object.getpeercert(True)
        problem = self.checks.problem(der)
        if problem is None and self.mesh:
            identity = peer_spiffe_id(der)
            ours = self.certs.current.identity.trust_domain if self.certs.current is not None else None
            if not self.checks.subject_alt_names and (identity is None or identity.trust_domain != ours):
                problem = ("ssl.fail_verify_san", f"the client is not a workload of trust domain {ours}")
        return problem

    def _failed(self, error: str, seen: tuple | None) -> str | None:
        if seen is not None:
            self._seen = seen  # these files failed: not retried until they change again
        if error == self.error:
            return None
        self.error = error
        kept = "keeping the last good certificate" if self.context is not None else "its handshakes fail"
        log.error("gateway TLS server %s (%s): %s; %s", self.name, self.tls.mode, error, kept)
        return UPDATE_REJECTED

    def _files(self) -> tuple[tuple[tuple[str, str], ...], str, str]:
        """((certificate, key) pairs, CA file, CRL file) as they resolve now."""
        settings = self.tls.settings
        names = settings.credential_names or ((settings.credential_name,) if settings.credential_name else ())
        if not names:
            if not (settings.server_certificate and settings.private_key):
                raise ValueError(f"{self.tls.mode} needs serverCertificate and privateKey, or credentialName")
            return ((settings.server_certificate, settings.private_key),), settings.ca_certificates, settings.ca_crl
        pairs, ca, crl = [], "", ""
        for name in names:
            credential = self.credentials.resolve(name)
            if not credential.certificate:
                raise CredentialNotFound(f"credentialName {name!r} has no tls.crt/tls.key")
            pairs.append((credential.certificate, credential.private_key))
            ca, crl = ca or credential.ca_certificates, crl or credential.ca_crl
        return tuple(pairs), ca or settings.ca_certificates, crl or settings.ca_crl

    def _build(self, files) -> ssl.SSLContext:
        pairs, ca, crl = files
        settings = self.tls.settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version, context.maximum_version = version_range(settings.min_protocol_version,
                                                                         settings.max_protocol_version)
        ciphers, ignored = cipher_list(settings.cipher_suites)
        if ignored:
            log.warning("gateway TLS server %s: ignoring invalid or repeated cipher suites %s (as Istio)",
                        self.name, ", ".join(ignored))
        if context.minimum_version < AUTO_MIN:
            ciphers += ":@SECLEVEL=0"  # OpenSSL 3 refuses TLS 1.0/1.1 above level 0; asked for explicitly
        context.set_ciphers(ciphers)
        for certificate, key in pairs[:2]:
            context.load_cert_chain(certificate, key)
        if len(pairs) > 2:
            log.warning("gateway TLS server %s: credentialNames takes at most two certificates", self.name)
        if self.tls.mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
            if not ca:
                raise ValueError(f"{self.tls.mode} needs caCertificates (or ca.crt in the credential)")
            context.load_verify_locations(cafile=ca)
            if crl:
                context.load_verify_locations(cafile=crl)
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
            context.verify_mode = ssl.CERT_REQUIRED if self.tls.mode == "MUTUAL" else ssl.CERT_OPTIONAL
        context.set_alpn_protocols(list(self.alpn))
        return context


def _fingerprint(files) -> tuple:
    pairs, ca, crl = files
    marks = []
    for path in (*(p for pair in pairs for p in pair), ca, crl):
        if path:
            status = os.stat(path)  # follows the ..data symlink a Secret mount swaps
            marks.append((path, status.st_ino, status.st_mtime_ns, status.st_size))
    return tuple(marks)


class TlsServer:
    """A terminating server on a port: its chain, context, and the listener its decrypted
    connections are served on (the chain's routes; its own name, so a pushed snapshot finds it)."""

    __slots__ = ("chain", "context", "listener")

    def __init__(self, chain: TlsServerChain, context: ServerContext, listener: Listener) -> None:
        self.chain = chain
        self.context = context
        self.listener = listener


def server_listener(port: Listener, chain: TlsServerChain) -> Listener:
    """The listener a terminated connection of `chain` is served on."""
    return replace(port, name=f"{port.name}|{','.join(chain.server_names) or '*'}", route_table=chain.route_table,
                   tcp_route=chain.tcp_route, sni_routes=None, tls_servers=())


def alpn_for(chain: TlsServerChain) -> tuple[str, ...]:
    return MESH_TCP_ALPN if chain.tcp_route is not None and chain.tls.mode == "ISTIO_MUTUAL" else HTTP_ALPN


class GatewayTls:
    """One worker's terminating gateway servers: built per snapshot, their files watched."""

    def __init__(self, runtime, credentials: CredentialResolver, certs, interval: float = WATCH_INTERVAL) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.certs = certs
        self._poller = Poller(self.refresh, interval, "the gateway's TLS files")
        self.ports: dict[str, ServerNames] = {}  # port listener name -> server name -> TlsServer
        self.contexts: dict[tuple, ServerContext] = {}
        self._users: dict[tuple, list[Listener]] = {}  # context key -> the port listeners it serves

    def install(self, snapshot: Snapshot) -> dict[str, Listener]:
        """Build (or keep) the contexts of the snapshot's terminating servers; returns the
        listeners terminated connections are served on, by name."""
        contexts, users, ports, listeners = {}, {}, {}, {}
        for port in snapshot.listeners:
            if not port.tls_servers:
                continue
            names = ServerNames()
            for chain in port.tls_servers:
                alpn = alpn_for(chain)
                key = (chain.tls, alpn)
                context = contexts.get(key) or self.contexts.get(key)
                if context is None:
                    context = ServerContext(chain.tls, alpn, self.credentials, self.certs)
                    self._count(context.refresh(), [port])
                contexts[key] = context
                users.setdefault(key, []).append(port)
                server = TlsServer(chain, context, server_listener(port, chain))
                names.add(chain.server_names, server)
                listeners[server.listener.name] = server.listener
            ports[port.name] = names
        self.contexts, self._users, self.ports = contexts, users, ports
        for key, context in contexts.items():
            if context.mesh and context.current() is None:  # files that did not load were logged already
                log.warning("gateway ISTIO_MUTUAL server on %s: no mesh certificate (--cert-dir or the control "
                            "server) yet: its handshakes fail until one arrives", ", ".join(p.name for p in users[key]))
        return listeners

    def router(self, port: Listener, fallback) -> "GatewayTlsRouter":
        return GatewayTlsRouter(self.runtime, port, fallback, self)

    def refresh(self) -> None:
        """Look at every server's files once (the watcher's tick)."""
        for key, context in list(self.contexts.items()):
            self._count(context.refresh(), self._users.get(key, ()))

    def _count(self, outcome: str | None, ports) -> None:
        if outcome is not None:
            for port in ports:
                self.runtime.listener_stats(port)[outcome] += 1

    def start(self) -> None:
        self._poller.start()

    def close(self) -> None:
        self._poller.close()


class GatewayTlsRouter(SniRouter):
    """A connection's first protocol on a port with terminating servers (see the module doc)."""

    def __init__(self, runtime, listener: Listener, fallback, gateway: GatewayTls) -> None:
        super().__init__(runtime, listener, fallback)
        self.gateway = gateway

    hello_timeout = HELLO_TIMEOUT  # every client of a terminating port speaks first

    def _hello_timeout(self) -> float:
        return self.hello_timeout

    def _timed_out(self) -> None:
        self.timer = None
        self.runtime.telemetry.no_filter_chain_match(self.listener)
        self.transport.close()  # no whole ClientHello in time: nothing to terminate

    def _route(self, hello: tls_hello.ClientHello | None) -> None:
        self._stop_timer()
        self.runtime.telemetry.tls_inspected(hello, too_large=False)
        names = self.gateway.ports.get(self.listener.name)
        server = names.match(server_name_of(hello)) if hello is not None and names is not None else None
        if server is None:
            return self._pass_on(hello)  # a PASSTHROUGH server of this port, the fallback, or an alert
        context = server.context.current()
        if context is None:  # its certificate never loaded: refused, the port's other servers unaffected
            self.runtime.listener_stats(self.listener)[NOT_READY] += 1
            return self._alert(_ALERT_HANDSHAKE_FAILURE)
        data, self.buffer = self.buffer, b""
        self.runtime.connection_closed(self)  # the handler counts itself on its server's listener
        terminate(self.runtime.loop, self.transport, context, data,
                  lambda tls_transport: self._connected(server, hello, tls_transport), self._handshake_done)

    def _refuse(self, hello: tls_hello.ClientHello | None) -> None:
        """No server for this hello (or not TLS at all: closed without an alert)."""
        if hello is None:
            self.transport.close()
        else:
            self._alert(_ALERT_UNRECOGNIZED_NAME if hello.server_name else _ALERT_HANDSHAKE_FAILURE)

    def _alert(self, description: int) -> None:
        self.transport.write(alert(description))
        self.transport.close()

    def _handshake_done(self, waiter: asyncio.Future) -> None:
        error = None if waiter.cancelled() else waiter.exception()
        stats = self.runtime.listener_stats(self.listener)
        if error is None:
            stats["ssl.handshake"] += 1
        else:
            stats[failure_stat(error)] += 1
            log.debug("gateway TLS handshake on %s failed: %s", self.listener.name, error)

    def _connected(self, server: TlsServer, hello: tls_hello.ClientHello, tls_transport) -> None:
        ssl_object = tls_transport.get_extra_info("ssl_object")
        problem = server.context.client_problem(ssl_object)
        if problem is not None:
            self.runtime.listener_stats(self.listener)[problem[0]] += 1
            log.debug("gateway TLS on %s: client refused: %s", self.listener.name, problem[1])
            tls_transport.abort()
            return
        certs = self.gateway.certs
        local = certs.current.identity.uri if server.context.mesh and certs.current is not None else None
        facts = TlsFacts(ssl_object, local)
        facts.sni = hello.server_name
        handler = secured_handler(self.runtime, server.listener, facts)
        if isinstance(handler, DownstreamH1):
            handler.scheme = "https"
        hand_over(tls_transport, handler, b"")
