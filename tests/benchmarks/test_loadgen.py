"""The C open-loop load generator, compiled and run for about a second against a tiny local server."""

import http.server
import shutil
import threading

import pytest

from benchmarks import loadgen

pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the server says otherwise
    close_every = 0
    served = 0

    def do_GET(self):
        type(self).served += 1
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.close_every and self.served % self.close_every == 0:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    def start(close_every=0):
        handler = type("Handler", (_Handler,), {"close_every": close_every, "served": 0})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd.server_address[1], handler

    started = []
    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return loadgen.build(tmp_path_factory.mktemp("build"))


@pytest.mark.timeout(30)
def test_loadgen_sends_on_schedule_and_parses_every_response(server, binary):
    port, handler = server()
    result = loadgen.run(binary, port, rate=200, duration=1.0, warmup=0.2, host="upstream.bench", connections=4)
    assert result["scheduled"] == 200 and result["completed"] == 200 == handler.served
    assert result["measured"] == 160  # the 0.2 s warm-up (40 requests) is not in the percentiles
    assert result["errors"] == 0 and result["incomplete"] == 0 and result["fifo"] == 0
    lat = result["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["send_lag_us"]["p50"] >= 0


@pytest.mark.timeout(30)
def test_loadgen_reconnects_when_the_server_closes(server, binary):
    port, handler = server(close_every=3)
    result = loadgen.run(binary, port, rate=100, duration=1.0, warmup=0.1, host="x", connections=2)
    assert result["completed"] == 100 == handler.served
    assert result["errors"] == 0 and result["reconnects"] > 0


def test_loadgen_refuses_bad_arguments(binary):
    with pytest.raises(RuntimeError, match="loadgen failed"):
        loadgen.run(binary, 1, rate=0, duration=1.0, warmup=0.1, host="x")
