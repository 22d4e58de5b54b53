"""The proxy's certificate from the control server: bootstrap with a join token (or, in a
Kubernetes pod, its projected ServiceAccount token: pymesh/security/sa_token.py), renewal over
mTLS, and the trust bundle the server pushes.

Bootstrap: the proxy makes its own key (it stays in this process's memory) and a CSR for the
identity its token names. It trusts the server only through the root it already has (--ca-root)
or through the token's pin: it fetches the server's bundle unverified, keeps the one root whose
public key has the pinned SHA-256 and trusts nothing else, then sends token and CSR over TLS
verified by that root to the server's identity (spiffe://<td>/ns/pymesh-system/sa/pymesh-control).
The answer's chain is checked against the bundle that came with it before it is installed.

Renewal, at `renew_fraction` of the lifetime with jitter, makes a new key and CSR each time and
authenticates with the current certificate (no token). A failed renewal is retried with backoff;
in the last tenth of the lifetime without a new certificate the proxy reports not ready; an
expired certificate is never presented (the store gives no context for it) and, once it has
expired, the token (if still valid) bootstraps afresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
from datetime import datetime
from typing import Callable

from pymesh.api import wire
from pymesh.proxy.certs import CERT_CHAIN, KEY, ROOT_CERT, CertificateStore
from pymesh.proxy.unary_h2 import UnaryError, request
from pymesh.security.ca import new_key_and_csr, utc_now, verify_issued_by, workload_certificate
from pymesh.security.files import write_private, write_public
from pymesh.security.identity import SpiffeId
from pymesh.security.jointoken import JoinToken, pinned_root
from pymesh.security.sa_token import ServiceAccountToken

log = logging.getLogger("pymesh.identity")

ALPN = ("h2",)
JITTER = 0.05  # of the lifetime, either way
UNREADY_FRACTION = 0.9  # past this much of the lifetime without a new certificate: not ready
RETRY_BASE, RETRY_MAX = 0.5, 30.0


class SigningFailed(Exception):
    pass


def control_identity(trust_domain: str) -> SpiffeId:
    return SpiffeId(trust_domain, wire.CONTROL_NAMESPACE, wire.CONTROL_SERVICE_ACCOUNT)


class WorkloadIdentity:
    def __init__(self, host: str, port: int, token: JoinToken | ServiceAccountToken, store: CertificateStore, ca_root: bytes | None = None,
                 renew_fraction: float = 0.5, ttl: float | None = None, rng: random.Random | None = None,
                 clock: Callable[[], datetime] = utc_now, directory: str | None = None):
        self.host, self.port = host, port
        self.token = token
        self.store = store
        self.ca_root = ca_root  # PEM, from --ca-root: then the token's pin is not needed
        self.renew_fraction = renew_fraction
        self.ttl = ttl
        self.identity = SpiffeId(token.trust_domain, token.namespace, token.service_account)
        self.server = control_identity(token.trust_domain)
        self.error: str | None = None  # the last failure, until a certificate is got
        self._rng = rng or random.Random()
        self._clock = clock
        self._obtained: datetime | None = None  # when the current certificate arrived
        self.first = asyncio.Event()  # set once the first certificate is in the store
        self.directory = directory  # where the certificate is kept across restarts, if anywhere

    # --- for the control channel and readiness ------------------------------------------------

    def channel_context(self) -> ssl.SSLContext | None:
        """mTLS to the control server with the current certificate (None without a valid one)."""
        return self.store.client_context(ALPN)

    def problem(self) -> str | None:
        """Why the proxy is not ready as far as its certificate goes (None: it is)."""
        cert = self.store.valid()
        if cert is None:
            return f"no valid workload certificate ({self.error or 'not signed yet'})"
        if self._clock() >= self._through(cert, UNREADY_FRACTION):
            return f"workload certificate expires at {cert.not_after:%H:%M:%SZ} and was not renewed ({self.error})"
        return None

    def trust_bundle(self, roots_pem: str) -> None:
        """A pushed bundle: installed with the current certificate if that still verifies by it."""
        cert = self.store.current
        roots = roots_pem.encode("ascii")
        if cert is None or roots == cert.roots_pem:
            return
        try:
            verify_issued_by(cert.chain_pem, roots, self._clock())
            updated = workload_certificate(cert.chain_pem, cert.key_pem, roots)
            self.store.update(updated)
        except (ValueError, ssl.SSLError) as exc:
            log.error("pushed trust bundle not installed: %s", exc)
            return
        self._keep(updated)
        log.info("trust bundle updated (%d bytes)", len(roots))

    # --- getting certificates -----------------------------------------------------------------

    async def run(self) -> None:
        """Get a certificate, then keep it renewed; never returns, never raises for failures."""
        if self.restore():
            self.first.set()
        failures = 0
        while True:
            cert = self.store.valid()
            if cert is not None:
                await asyncio.sleep(max(0.0, (self._renew_time(cert) - self._clock()).total_seconds()))
            try:
                await self.obtain()
                failures = 0
                self.first.set()
            except SigningFailed as exc:
                self.error = str(exc)
                failures += 1
                delay = self._retry_delay(failures)
                log.error("workload certificate for %s not %s: %s; retrying in %.1f s", self.identity.uri,
                          "renewed" if self.store.valid() else "obtained", exc, delay)
                await asyncio.sleep(delay)

    async def obtain(self) -> None:
        """One certificate into the store: renewed over mTLS while the current one is valid,
        else bootstrapped with the token."""
        context = self.channel_context()
        renewing = context is not None
        if context is None:
            context = await self._bootstrap_context()
        key_pem, csr_pem = new_key_and_csr(self.identity)
        headers = [("content-type", wire.JSON_TYPE)]
        if not renewing:
            try:
                headers.append(("authorization", f"Bearer {self.token.bearer()}"))
            except OSError as exc:
                raise SigningFailed(f"cannot read the token: {exc}") from None
        body = wire.encode_body(wire.SignRequest(csr_pem.decode("ascii"), self.ttl))
        try:
            response = await request(self.host, self.port, context, self.server, "POST", wire.SIGN_PATH, headers, body)
        except UnaryError as exc:
            raise SigningFailed(str(exc)) from None
        if response.status != 200:
            raise SigningFailed(f"the control server answered {response.status}: {_error_of(response.body)}")
        try:
            answer = wire.decode_body(wire.SignResponse, response.body)
            chain, roots = answer.certificate_chain.encode("ascii"), answer.trust_bundle.encode("ascii")
            verify_issued_by(chain, roots, self._clock())
            cert = workload_certificate(chain, key_pem, roots)
            if cert.identity != self.identity:
                raise ValueError(f"signed for {cert.identity.uri}, not {self.identity.uri}")
            self.install(cert)
        except (ValueError, ssl.SSLError) as exc:
            raise SigningFailed(f"unusable answer: {exc}") from None

    def install(self, cert) -> None:
        """A new certificate into the store (and the data directory); its renewal is timed from now."""
        self.store.update(cert)
        self._obtained, self.error = self._clock(), None
        self._keep(cert)

    def _keep(self, cert) -> None:
        if self.directory is not None:
            try:
                write_public(os.path.join(self.directory, CERT_CHAIN), cert.chain_pem)
                write_public(os.path.join(self.directory, ROOT_CERT), cert.roots_pem)
                write_private(os.path.join(self.directory, KEY), cert.key_pem)  # last: the set is whole
            except OSError as exc:
                log.error("cannot keep the workload certificate in %s: %s", self.directory, exc)

    def restore(self) -> bool:
        """The certificate kept in the data directory, if it is still valid and this token's."""
        if self.directory is None or not os.path.exists(os.path.join(self.directory, KEY)):
            return False
        try:
            files = []
            for name in (CERT_CHAIN, KEY, ROOT_CERT):
                with open(os.path.join(self.directory, name), "rb") as stream:
                    files.append(stream.read())
            cert = workload_certificate(*files)
        except (OSError, ValueError) as exc:
            log.warning("ignoring the kept workload certificate in %s: %s", self.directory, exc)
            return False
        if cert.identity != self.identity or cert.expired(self._clock()):
            log.info("the kept workload certificate in %s is %s; getting a new one", self.directory,
                     "expired" if cert.identity == self.identity else f"for {cert.identity.uri}")
            return False
        self.store.update(cert)
        self._obtained = self._clock()
        log.info("workload certificate restored from %s", self.directory)
        return True

    async def _bootstrap_context(self) -> ssl.SSLContext:
        """TLS trusting only the root the proxy was given or the token pins."""
        root = self.ca_root
        if root is None:
            fetch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            fetch.check_hostname, fetch.verify_mode = False, ssl.CERT_NONE  # the answer is checked by the pin
            fetch.set_alpn_protocols(list(ALPN))
            try:
                response = await request(self.host, self.port, fetch, None, "GET", wire.BUNDLE_PATH)
                if response.status != 200:
                    raise SigningFailed(f"trust bundle: the control server answered {response.status}")
                root = pinned_root(response.body, self.token.ca_pin)
            except (UnaryError, ValueError) as exc:
                raise SigningFailed(str(exc)) from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # the server is checked by its SPIFFE identity instead
        context.load_verify_locations(cadata=root.decode("ascii"))
        context.set_alpn_protocols(list(ALPN))
        return context

    def _renew_time(self, cert) -> datetime:
        fraction = self.renew_fraction + self._rng.uniform(-JITTER, JITTER)
        return self._through(cert, min(0.95, max(0.05, fraction)))

    def _through(self, cert, fraction: float) -> datetime:
        """`fraction` of the way through the certificate's life as this proxy has it: from its
        arrival, not from notBefore, which the CA backdates for clock skew (a minute would be
        all of a short test lifetime)."""
        start = max(cert.not_before, self._obtained or cert.not_before)
        return start + (cert.not_after - start) * fraction

    def _retry_delay(self, failures: int) -> float:
        delay = min(RETRY_MAX, RETRY_BASE * 2 ** min(failures, 10))
        cert = self.store.valid()
        if cert is not None:  # a renewal must be tried again before the certificate runs out
            left = (cert.not_after - self._clock()).total_seconds()
            delay = min(delay, max(0.1, left / 4))
        return self._rng.uniform(delay / 2, delay)


def _error_of(body: bytes) -> str:
    """The server's {"error": ...} answer (JSON), or the start of whatever it sent."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return repr(body[:200])
