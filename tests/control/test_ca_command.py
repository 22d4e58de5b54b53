"""`pymesh ca init` and `pymesh ca issue`, run as a user runs them."""

import os
import subprocess
import sys

from cryptography import x509

from pymesh.security.identity import SpiffeId, spiffe_id_of


def pymesh(*args):
    return subprocess.run([sys.executable, "-m", "pymesh", "ca", *args], capture_output=True, text=True, timeout=60)


def mode(path):
    return os.stat(path).st_mode & 0o777


def test_init_then_issue_writes_istio_layout_with_private_keys_0600(tmp_path):
    root, out = tmp_path / "root", tmp_path / "reviews"
    done = pymesh("init", str(root), "--trust-domain", "example.org")
    assert done.returncode == 0, done.stderr
    assert mode(root / "root-key.pem") == 0o600 and mode(root) == 0o700
    done = pymesh("issue", "--ca-dir", str(root), "--namespace", "demo", "--service-account", "reviews",
                  "--out", str(out), "--ttl", "90s")
    assert done.returncode == 0, done.stderr
    assert "spiffe://example.org/ns/demo/sa/reviews" in done.stdout
    assert sorted(os.listdir(out)) == ["cert-chain.pem", "key.pem", "root-cert.pem"]
    assert mode(out / "key.pem") == 0o600
    leaf = x509.load_pem_x509_certificates((out / "cert-chain.pem").read_bytes())[0]
    assert spiffe_id_of(leaf) == SpiffeId("example.org", "demo", "reviews")
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 150  # 90s + 1 min backdate
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(out / "root-cert.pem"), str(out / "cert-chain.pem")],
                            capture_output=True, text=True, timeout=30)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_init_refuses_to_overwrite_a_root_without_force(tmp_path):
    assert pymesh("init", str(tmp_path)).returncode == 0
    key = (tmp_path / "root-key.pem").read_bytes()
    again = pymesh("init", str(tmp_path))
    assert again.returncode == 1 and "already holds a root key" in again.stderr
    assert (tmp_path / "root-key.pem").read_bytes() == key
    assert pymesh("init", str(tmp_path), "--force").returncode == 0
    assert (tmp_path / "root-key.pem").read_bytes() != key


def test_issue_errors_are_clear(tmp_path):
    missing = pymesh("issue", "--ca-dir", str(tmp_path / "none"), "--namespace", "demo", "--service-account", "x",
                     "--out", str(tmp_path / "out"))
    assert missing.returncode == 1 and "root-cert.pem" in missing.stderr
    assert pymesh("init", str(tmp_path / "root")).returncode == 0
    bad = pymesh("issue", "--ca-dir", str(tmp_path / "root"), "--namespace", "de mo", "--service-account", "x",
                 "--out", str(tmp_path / "out"))
    assert bad.returncode == 1 and "invalid namespace" in bad.stderr
    ttl = pymesh("issue", "--ca-dir", str(tmp_path / "root"), "--namespace", "demo", "--service-account", "x",
                 "--out", str(tmp_path / "out"), "--ttl", "soon")
    assert ttl.returncode == 2 and "invalid duration" in ttl.stderr
