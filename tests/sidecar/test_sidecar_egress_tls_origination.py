"""Istio's task "Egress TLS Origination" (istio.io, tasks/traffic-management/egress/
egress-tls-origination), its YAML unchanged: the app calls http://edition.cnn.com/politics, the
ServiceEntry maps port 80 to targetPort 443, and the DestinationRule's portLevelSettings for port
80 say `tls: {mode: SIMPLE}`, so the sidecar originates HTTPS.

Here edition.cnn.com is a pod: the "sleep" pod's /etc/hosts maps the name to the "external" pod,
where `openssl s_server` serves TLS with a certificate for edition.cnn.com from a test CA. The
DestinationRule has no caCertificates, so the sidecar verifies against the system roots, as
Istio's does: the fixture's variant is that the proxy's system roots are the test CA
(SSL_CERT_FILE), so the YAML stays as the task has it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from netns import TestBed, unavailable_reason
from sidecar_helpers import app_curl, requires_tools, sidecar_pod, wait_until, write_config
from throwaway_ca import ThrowawayCA

pytestmark = [requires_tools, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]

TASK_YAML = (Path(__file__).parents[1] / "api" / "data" / "istio_samples" / "istio.io"
             / "egress-tls-origination.yaml").read_text()  # as tests/api/data/istio_samples/README.md says


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_egress_tls_origination(tmp_path, trusted):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    ca = ThrowawayCA(tmp_path / "pki")
    cert = ca.issue("cnn", "edition.cnn.com")
    roots = ca.ca_path if trusted else ThrowawayCA(tmp_path / "other").ca_path
    with TestBed() as bed:
        sleep, external = bed.add_pod("sleep"), bed.add_pod("external")
        sleep.set_hosts({"edition.cnn.com": external.ip})
        external.spawn("openssl", "s_server", "-accept", "443", "-cert", cert.cert, "-key", cert.key, "-www")
        wait_until(lambda: external.run(sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 443), 1)",
                                        check=False).returncode == 0, what="openssl s_server listening")
        config = write_config(tmp_path, TASK_YAML)
        sidecar = sidecar_pod(sleep, config, "sleep", {"app": "sleep"},
                              env=dict(os.environ, SSL_CERT_FILE=str(roots)))
        done = app_curl(sleep, "http://edition.cnn.com/politics", "-o", "/dev/null", "-D", "-", check=False)
        if trusted:
            assert done.stdout.startswith("HTTP/1.1 200"), (done.stdout, done.stderr, sidecar.process.output())
            stats = sidecar.stats()
            assert stats["cluster.outbound|80||edition.cnn.com.ssl.handshake"] >= 1
        else:
            assert done.stdout.startswith("HTTP/1.1 503"), done.stdout
            assert sidecar.stats()["cluster.outbound|80||edition.cnn.com.ssl.fail_verify_error"] >= 1
