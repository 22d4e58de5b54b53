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
    for port in ports:
        with socket.socket() as sock:
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


@pytest.mark.timeout(120)
def test_quickstart_splits_90_10_and_reports_metrics():
    if not ports_free(9080, 9081, 9082, 15000, 15090, 15021):
        pytest.skip("the quickstart's fixed ports are in use")
    out = run_example("quickstart/run.py")
    v1 = int(re.search(r"reviews-v1:\s+(\d+)", out).group(1))
    assert 850 <= v1 <= 950, out  # 90% of 1000 within a generous margin: the split works
    assert "status codes: {200: 1000}" in out
    assert "{'reviews-v2': 20}" in out  # the header route
    assert 'istio_requests_total{destination_service="reviews.demo"' in out


@pytest.mark.timeout(120)
def test_canary_demo_shifts_live_without_failures():
    if not ports_free(9080, 9101, 9102, 15010, 15014, 15101, 15102, 15200, 15210, 15220):
        pytest.skip("the canary demo's fixed ports are in use")
    out = run_example("canary/run.py")
    assert re.search(r"reviews-v1\.demo\s+demo\s+127\.0\.0\.1\s+\d+\s+\d+\s+SYNCED", out), out
    assert "weights v1=0   v2=100 reviews-v2: 100.0%" in out, out
    assert re.search(r"\n\d+ requests in all during the shifts, 0 failed", out), out
