"""Gateway TLS contexts without sockets (pymesh.proxy.gateway_tls.ServerContext): what each
server's settings build, and the clear error each mistake gets; rebuilt only when files change."""

from __future__ import annotations

import os
import ssl

import pytest

from gateway_tls_bed import write_credential
from pymesh.proxy.credentials import CredentialResolver
from pymesh.proxy.gateway_tls import HTTP_ALPN, UPDATE_REJECTED, UPDATED, ServerContext, alert
from pymesh.routing.snapshot import ServerTls
from pymesh.api import model
from throwaway_ca import ThrowawayCA


@pytest.fixture
def files(tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")
    server = ca.issue("server", "a.example.com")
    creds = tmp_path / "creds"
    write_credential(creds, "plain", server.cert, server.key)
    write_credential(creds, "with-ca", server.cert, server.key, ca.ca_path)
    return ca, server, creds


def _context(creds, mode="SIMPLE", **fields) -> ServerContext:
    settings = model.ServerTLSSettings(mode=mode, **fields)
    return ServerContext(ServerTls(mode, settings, "istio-system"), HTTP_ALPN, CredentialResolver(str(creds)), None)


@pytest.mark.parametrize("mode, fields, verify", [
    ("SIMPLE", {"credential_name": "plain"}, ssl.CERT_NONE),
    ("SIMPLE", {"credential_name": "kubernetes://plain"}, ssl.CERT_NONE),
    ("MUTUAL", {"credential_name": "with-ca"}, ssl.CERT_REQUIRED),
    ("OPTIONAL_MUTUAL", {"credential_name": "with-ca"}, ssl.CERT_OPTIONAL),
    ("SIMPLE", {"credential_name": "plain", "min_protocol_version": "TLSV1_3"}, ssl.CERT_NONE),
])
def test_settings_that_build(files, mode, fields, verify):
    context = _context(files[2], mode, **fields)
    assert context.refresh() == UPDATED
    assert context.current().verify_mode == verify and context.error is None


@pytest.mark.parametrize("mode, fields, error", [
    ("SIMPLE", {"credential_name": "absent"}, "no folder"),
    ("SIMPLE", {"credential_name": "../plain"}, "not a Kubernetes Secret name"),
    ("SIMPLE", {}, "needs serverCertificate and privateKey, or credentialName"),
    ("MUTUAL", {"credential_name": "plain"}, "MUTUAL needs caCertificates"),
    ("SIMPLE", {"credential_name": "plain", "min_protocol_version": "TLSV1_3", "max_protocol_version": "TLSV1_2"},
     "minProtocolVersion TLSV1_3 is above maxProtocolVersion TLSV1_2"),
    ("MUTUAL", {"credential_name": "with-ca", "verify_certificate_hash": ("xyz",)}, "verifyCertificateHash"),
    ("SIMPLE", {"server_certificate": "/nonexistent/cert.pem", "private_key": "/nonexistent/key.pem"},
     "No such file"),
])
def test_settings_that_do_not_build_say_why(files, mode, fields, error):
    context = _context(files[2], mode, **fields)
    context.refresh()
    assert context.current() is None and error in context.error


def test_rebuilt_only_when_a_file_changes_and_a_bad_one_keeps_the_last(files, tmp_path):
    ca, server, creds = files
    context = _context(creds, credential_name="plain")
    assert context.refresh() == UPDATED
    first = context.current()
    assert context.refresh() is None and context.current() is first  # nothing changed: same object
    other = ca.issue("other", "a.example.com")
    write_credential(creds, "plain", other.cert, other.key)
    assert context.refresh() == UPDATED and context.current() is not first
    good = context.current()
    (creds / "plain" / "tls.key").write_text("garbage")
    assert context.refresh() == UPDATE_REJECTED and context.current() is good
    assert context.refresh() is None  # the same broken files: logged and counted once
    os.remove(creds / "plain" / "tls.key")
    assert context.refresh() == UPDATE_REJECTED and context.current() is good


def test_the_alert_record():
    assert alert(112) == b"\x15\x03\x03\x00\x02\x02\x70"


def test_a_secret_mount_swapping_its_data_symlink_is_seen(files, tmp_path):
    """The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> a timestamped folder, and an
    update swaps ..data in one rename."""
    ca, server, _ = files
    mount = tmp_path / "mounted"
    (mount / "cred").mkdir(parents=True)

    def publish(version: str, cert) -> None:
        folder = mount / "cred" / version
        write_credential(mount / "cred", version, cert.cert, cert.key)
        os.symlink(folder.name, mount / "cred" / "..data_tmp")
        os.replace(mount / "cred" / "..data_tmp", mount / "cred" / "..data")

    publish("..2026_01", server)
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", mount / "cred" / name)
    context = _context(mount, credential_name="cred")
    assert context.refresh() == UPDATED
    publish("..2026_02", ca.issue("rotated", "a.example.com"))
    assert context.refresh() == UPDATED
