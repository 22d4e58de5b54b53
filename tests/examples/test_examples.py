"""The README's demos, run as a user runs them: they must exit 0 and print what they promise.

They use fixed ports on 127.0.0.1 (the ones the README shows), so they skip when those are taken.
"""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ports_free(*ports: int) -> bool:
    """Whether a listener could bind each port now. SO_REUSEADDR as the demos' servers set it, so
    the TIME_WAIT connections an earlier run left do not count as taken (a listener still does)."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def run_example(script: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


QUICKSTART_PORTS = (9080, 9081, 9082, 9181, 9182, 15000, 15090, 15021, 15210, 15211, 15212, 15220, 15221, 15222)
PRODUCTPAGE = "spiffe://cluster.local/ns/demo/sa/productpage"


def server_requests(out: str, version: str, principal: str, code: int) -> int:
    """What a reviews sidecar counted as mutual TLS from `principal` (0 when it printed no such series)."""
    found = re.search(rf'istio_requests_total{{destination_version="{version}",source_principal="{principal}",'
                      rf'connection_security_policy="mutual_tls",response_code="{code}"}} (\d+)', out)
    return int(found.group(1)) if found else 0


@pytest.mark.timeout(120)
def test_quickstart_splits_90_10_over_mtls_and_enforces_identity():
    if not ports_free(*QUICKSTART_PORTS):
        pytest.skip("the quickstart's fixed ports are in use")
    out = run_example("quickstart/run.py")
    v1 = int(re.search(r"reviews-v1:\s+(\d+)", out).group(1))
    assert 850 <= v1 <= 950, out  # 90% of 1000 within a generous margin: the split works
    assert "status codes: {200: 1000}" in out
    assert "{'reviews-v2': 20}" in out  # the header route
    # every request reached a reviews sidecar over mTLS as productpage's identity, none otherwise
    assert server_requests(out, "v1", PRODUCTPAGE, 200) == v1, out
    assert server_requests(out, "v2", PRODUCTPAGE, 200) == 1000 - v1 + 20, out
    assert 'connection_security_policy="none"' not in out, out
    assert "(reviews-viewer allows productpage only GET): 403 RBAC: access denied" in out, out
    assert re.search(r"mTLS as spiffe://cluster.local/ns/demo/sa/ratings: 403 RBAC: access denied ", out), out
    assert server_requests(out, "v1", "spiffe://cluster.local/ns/demo/sa/ratings", 403) == 1, out
    assert re.search(r"plaintext: +connection reset ", out), out
    assert "reviews-v1's identity (http://127.0.0.1:15210/certs): spiffe://cluster.local/ns/demo/sa/reviews (" in out, out
    workdir = re.search(r"in (\S+) \(removed at the end\)", out).group(1)
    assert not Path(workdir).exists(), "the mesh's keys must not outlive the demo"


@pytest.mark.timeout(120)
def test_canary_demo_shifts_live_without_failures():
    if not ports_free(9080, 9101, 9102, 15010, 15014, 15101, 15102, 15200, 15210, 15220):
        pytest.skip("the canary demo's fixed ports are in use")
    out = run_example("canary/run.py")
    assert re.search(r"reviews-v1\.demo\s+demo\s+127\.0\.0\.1\s+\d+\s+\d+\s+SYNCED", out), out
    assert "weights v1=0   v2=100 reviews-v2: 100.0%" in out, out
    assert re.search(r"\n\d+ requests in all during the shifts, 0 failed", out), out
