"""The admission webhooks' serving certificate, from one of two places:

- `DirectoryCert`: tls.crt and tls.key in a directory (a cert-manager Secret mounted as a volume;
  its ca.crt, when there, is the CA bundle), reloaded when the files change: the kubelet swaps a
  Secret volume's files atomically, so a changed pair is read whole or not at all; a pair that
  does not load is logged and the last good one stays.
- `MeshCaCert`: issued by the mesh CA for the Service's DNS names, renewed at half its life; the
  CA bundle is the mesh's trust bundle.

Either holds one SSLContext whose certificate is replaced in place, so new connections get the
new one and open ones are not disturbed; `on_bundle` is called when the CA bundle changes, for
whoever writes it into the webhook configurations.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
from datetime import timedelta
from typing import Callable

from pymesh.control.authority import MeshCA
from pymesh.security.ca import load_certs, utc_now
from pymesh.security.tls import load_key_pair

log = logging.getLogger("pymesh.control.webhook")

CHECK_INTERVAL = 10.0  # seconds between looks at --webhook-cert-dir (the kubelet syncs Secrets every ~60s)
SERVING_TTL = timedelta(days=30)
RETRY = 60.0  # seconds after a failed renewal


def server_context() -> ssl.SSLContext:
    """TLS 1.2 or newer (the API server is Go's TLS client), HTTP/1.1 only, no client certificates
    (the API server does not present one unless configured to, and the requests carry nothing a
    peer could not send to the API server itself)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a Service (it calls `<name>.<ns>.svc`)."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


class DirectoryCert:
    def __init__(self, directory: str, on_bundle: Callable[[bytes], None] = lambda bundle: None):
        self.directory = directory
        self.context = server_context()
        self.ca_bundle_pem: bytes | None = None
        self._on_bundle = on_bundle
        self._seen: bytes | None = None
        if not self.reload():
            raise ValueError(f"--webhook-cert-dir {directory}: no usable tls.crt and tls.key")

    def reload(self) -> bool:
        """Load the files if they changed; whether a pair is in force."""
        try:
            chain, key = (_read(self.directory, name) for name in ("tls.crt", "tls.key"))
            bundle = _read(self.directory, "ca.crt") if os.path.exists(os.path.join(self.directory, "ca.crt")) else None
        except OSError as exc:
            log.error("webhook certificate: cannot read %s: %s", self.directory, exc.strerror or exc)
            return self._seen is not None
        digest = hashlib.sha256(chain + b"\0" + key + b"\0" + (bundle or b"")).digest()
        if digest == self._seen:
            return True
        try:
            load_key_pair(self.context, chain, key)
            if bundle is not None:
                load_certs(bundle)
        except (ssl.SSLError, ValueError) as exc:
            log.error("webhook certificate: %s does not hold a usable pair (%s); keeping the last one",
                      self.directory, exc)
            return self._seen is not None
        log.info("webhook certificate: loaded from %s", self.directory)
        self._seen = digest
        if bundle is not None and bundle != self.ca_bundle_pem:
            self.ca_bundle_pem = bundle
            self._on_bundle(bundle)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.reload()


class MeshCaCert:
    def __init__(self, ca: MeshCA, dns_names: list[str], on_bundle: Callable[[bytes], None] = lambda bundle: None):
        self.ca = ca
        self.dns_names = dns_names
        self.context = server_context()
        self._on_bundle = on_bundle
        self.ca_bundle_pem = ca.bundle_pem
        self._delay = self.renew()

    def renew(self) -> float:
        """A new certificate into the context; seconds until the next renewal (half its life)."""
        now = utc_now()
        chain, key = self.ca.authority.issue_server(self.dns_names, SERVING_TTL, now)
        load_key_pair(self.context, chain, key)
        not_after = load_certs(chain)[0].not_valid_after_utc
        if self.ca.bundle_pem != self.ca_bundle_pem:  # the mesh roots rotated
            self.ca_bundle_pem = self.ca.bundle_pem
            self._on_bundle(self.ca_bundle_pem)
        log.info("webhook certificate: issued by the mesh CA for %s until %s", ", ".join(self.dns_names),
                 f"{not_after:%Y-%m-%dT%H:%M:%SZ}")
        return max(1.0, (not_after - now).total_seconds() / 2)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._delay)
            try:
                self._delay = self.renew()
            except (ValueError, ssl.SSLError) as exc:  # the current certificate stays until it expires
                log.error("webhook certificate: renewal failed (%s); retrying in %.0fs", exc, RETRY)
                self._delay = RETRY


def _read(directory: str, name: str) -> bytes:
    with open(os.path.join(directory, name), "rb") as stream:
        return stream.read(1 << 20)
