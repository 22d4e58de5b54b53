"""pymesh's HTTP/2 codec on a real socket against nghttp2's clients (curl, nghttp, h2load), the
library Envoy is built on: uploads and echoes larger than every window, many streams on one
connection, a client with tiny windows. setup.sh installs them (curl, nghttp2-client)."""

from __future__ import annotations

import subprocess

import pytest

from h2_echo_server import EchoServer

@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.stop()


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, timeout=60)


def test_curl_prior_knowledge_upload_is_echoed(echo, tmp_path):
    body = bytes(range(256)) * 20_000  # ~5 MB: many windows' worth both ways
    (tmp_path / "body").write_bytes(body)
    out = tmp_path / "out"
    result = run("curl", "-sS", "--http2-prior-knowledge", "--data-binary", f"@{tmp_path / 'body'}",
                 "-D", str(tmp_path / "headers"), "-o", str(out), f"http://127.0.0.1:{echo.port}/up?x=1")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == body
    headers = (tmp_path / "headers").read_text().lower()
    assert headers.startswith("http/2 200")
    assert "x-echo-method: post" in headers and "x-echo-path: /up?x=1" in headers
    assert f"x-echo-authority: 127.0.0.1:{echo.port}" in headers


def test_nghttp_concurrent_uploads_through_small_client_windows(echo, tmp_path):
    body = b"n" * 300_000
    (tmp_path / "body").write_bytes(body)
    # -m 20: twenty concurrent streams; -w/-W 16: the client's windows at 64 KiB
    result = run("nghttp", "-m", "20", "-w", "16", "-W", "16", "-d", str(tmp_path / "body"),
                 f"http://127.0.0.1:{echo.port}/many")
    assert result.returncode == 0, result.stderr
    assert result.stdout == body * 20  # every echo, whole
    assert echo.stats["answered"] == 20
    assert "errors" not in echo.stats


def test_h2load_many_streams_per_connection(echo):
    result = run("h2load", "-n", "3000", "-c", "2", "-m", "50", f"http://127.0.0.1:{echo.port}/")
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert "3000 succeeded, 0 failed, 0 errored" in out, out
    assert echo.stats["answered"] == 3000
