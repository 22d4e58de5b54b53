"""Mesh certificates for the mTLS rows, made in the run's work directory (never committed): one
root per run, one workload identity per hop, in Istio's file layout, so pymesh (--cert-dir) and
Envoy (file-based tls_certificates) present and trust the very same certificates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pymesh.control import ca_store
from pymesh.security.ca import utc_now
from pymesh.security.identity import SpiffeId

NAMESPACE = "bench"
TTL = timedelta(hours=4)  # longer than any run: no rotation during a measurement


def spiffe_uri(service_account: str) -> str:
    return SpiffeId("cluster.local", NAMESPACE, service_account).uri


def cert_dir(workdir: Path, service_account: str) -> Path:
    """The directory holding `service_account`'s cert-chain.pem, key.pem and root-cert.pem,
    issued on first use by the run's root (made on first use too)."""
    root_dir, directory = workdir / "certs" / "root", workdir / "certs" / service_account
    if not (directory / ca_store.KEY).exists():
        ca = (ca_store.load_root(str(root_dir)) if (root_dir / ca_store.ROOT_KEY).exists()
              else ca_store.init_root(str(root_dir), "cluster.local"))
        identity = SpiffeId(ca.trust_domain, NAMESPACE, service_account)
        ca_store.write_workload(str(directory), ca.issue(identity, TTL, utc_now()))
    return directory
