"""TLS reads stay off mmap (pymesh.proxy.allocator): counted in page faults, in a fresh
interpreter that imports nothing else, reading small TLS records the way uvloop's TLS protocol
does (SSLObject.read of 256 KiB). Each mmap-served read faults in a fresh page; heap-served
reads reuse the same memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.mesh_pki import MeshPki

READS = 200
ROOT = Path(__file__).resolve().parents[2]  # the checkout: the child imports its pymesh
_CHILD = r"""
import resource, ssl, sys
cert_dir, warm = sys.argv[1], sys.argv[2] == "1"
if warm:
    from pymesh.proxy.allocator import TLS_READ_SIZE, raise_mmap_threshold
    raise_mmap_threshold()
else:
    TLS_READ_SIZE = 256 * 1024
def context(server):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.load_verify_locations(cert_dir + "/root-cert.pem")
    c.load_cert_chain(cert_dir + "/cert-chain.pem", cert_dir + "/key.pem")
    return c
s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
server = context(True).wrap_bio(s_in, s_out, server_side=True)
client = context(False).wrap_bio(c_in, c_out)
for _ in range(10):  # the handshake, bounded
    for side in (client, server):
        try:
            side.do_handshake()
        except ssl.SSLWantReadError:
            pass
    s_in.write(c_out.read())
    c_in.write(s_out.read())
def one():
    client.write(b"x" * 100)
    s_in.write(c_out.read())
    return server.read(TLS_READ_SIZE)
for _ in range(20):
    one()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[3])):
    assert len(one()) == 100
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(cert_dir, warm: bool) -> int:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(cert_dir), "1" if warm else "0", str(READS)],
                          capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    return int(done.stdout.strip())


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    return MeshPki(tmp_path_factory.mktemp("pki")).issue("default", "reader")


def test_tls_reads_fault_no_pages_once_the_threshold_is_raised(cert_dir):
    cold = _faults(cert_dir, warm=False)
    if cold < READS:
        pytest.skip(f"this allocator serves 256 KiB blocks without mmap anyway ({cold} faults)")
    assert _faults(cert_dir, warm=True) < READS // 10
