"""The admission webhooks over real HTTPS: a real `pymesh control serve --webhook-listen` with
curl as the API server's stand-in client (verifying the certificate against the CA bundle for
the Service's DNS name, as the API server does with the webhook configuration's caBundle), and
raw TLS sockets for what no well-behaved client sends. The serving certificate's reload is
tested in-process on a throwaway CA."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from pymesh.control.kube import webhook_cert
from pymesh.control.kube.webhook import WebhookLimits, WebhookServer
from pymesh.control.kube.webhooks import injector, known, validate
from pymesh.kube.inject_settings import InjectSettings
from throwaway_ca import ThrowawayCA
from webhook_harness import RECORDED, SERVICE, TIMEOUT, ControlServer, control, curl  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def test_validate_answers_a_review_from_curl(control):
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "reviews", "namespace": "bookinfo"},
          "spec": {"hosts": ["reviews"], "http": [{"timeout": "soon", "route": [{"destination": {"host": "r"}}]}]}}
    review = json.loads(RECORDED)
    review["request"].update(kind={"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
                             resource={"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
                             name="reviews", namespace="bookinfo", object=vs)
    status, text = curl(control, "/validate", json.dumps(review).encode())
    assert status == 200
    answer = json.loads(text)
    assert answer["kind"] == "AdmissionReview" and answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == review["request"]["uid"] and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"].startswith(
        "configuration is invalid: VirtualService bookinfo/reviews: spec.http[0].timeout: invalid duration")
    vs["spec"]["http"][0]["timeout"] = "5s"
    status, text = curl(control, "/validate", json.dumps(review).encode())
    assert status == 200 and json.loads(text)["response"] == {"uid": review["request"]["uid"], "allowed": True}


def test_a_v1beta1_review_is_answered_in_v1beta1(control):
    review = json.loads(RECORDED)
    review["apiVersion"] = "admission.k8s.io/v1beta1"
    status, text = curl(control, "/inject", json.dumps(review).encode())
    answer = json.loads(text)
    assert status == 200 and answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["patchType"] == "JSONPatch"


HOSTILE = {
    "not JSON": ("/validate", b"{", (), 400, "not JSON"),
    "wrong kind": ("/validate", b'{"apiVersion":"v1","kind":"Pod"}', (), 400, "apiVersion admission.k8s.io/v1"),
    "missing uid": ("/validate", b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}', (),
                    400, "request.uid is missing"),
    "empty body": ("/validate", b"", (), 400, "no body found"),
    "wrong content type": ("/validate", b"{}", ("-H", "Content-Type: text/yaml"), 415, "application/json"),
    "wrong method": ("/validate", None, (), 405, "POST"),
    "wrong path": ("/mutate", b"{}", (), 404, "/inject"),
    "chunked body": ("/validate", b"{}", ("-H", "Transfer-Encoding: chunked"), 411, "Content-Length"),
}


@pytest.mark.parametrize("path,data,args,status,message", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_requests_get_their_status_and_a_reason(control, path, data, args, status, message):
    got, text = curl(control, path, data, *args)
    assert got == status and message in text
    assert curl(control, "/ready")[0] == 200  # and the listener is still there


def test_connections_are_kept_alive_between_reviews(control):
    """curl's -v shows the reuse: two URLs in one run share the connection."""
    ca = control.args[control.args.index("--data-dir") + 1] + "/ca/root-cert.pem"
    url = f"https://{SERVICE}:{control.webhook_port}/ready"
    done = subprocess.run(["curl", "-sS", "-v", "--max-time", str(TIMEOUT), "--cacert", ca, "--resolve",
                           f"{SERVICE}:{control.webhook_port}:127.0.0.1", url, url],
                          capture_output=True, timeout=TIMEOUT + 5, check=True)
    assert done.stdout == b"ready\nready\n" and b"Re-using existing connection" in done.stderr


def test_the_mesh_ca_certificate_names_the_service_and_is_refused_for_other_names(control):
    ca = control.args[control.args.index("--data-dir") + 1] + "/ca/root-cert.pem"
    done = subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert", ca, "--resolve",
                           f"other.example:{control.webhook_port}:127.0.0.1",
                           f"https://other.example:{control.webhook_port}/ready"], capture_output=True,
                          timeout=TIMEOUT + 5)
    assert done.returncode == 60, done.stderr  # peer certificate cannot be authenticated
    for name in ("pymesh-control.pymesh-system.svc", "pymesh-control.pymesh-system.svc.cluster.local"):
        done = subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert", ca, "--resolve",
                               f"{name}:{control.webhook_port}:127.0.0.1",
                               f"https://{name}:{control.webhook_port}/ready"],
                              capture_output=True, timeout=TIMEOUT + 5)
        assert done.stdout == b"ready\n", done.stderr


# --- in-process: limits and the certificate directory ----------------------------------------------

def _directory_cert(tmp_path: Path, ca: ThrowawayCA, label: str) -> Path:
    pair = ca.issue(label, SERVICE)
    directory = tmp_path / "certs"
    directory.mkdir(exist_ok=True)
    shutil.copy(pair.cert, directory / "tls.crt")
    shutil.copy(pair.key, directory / "tls.key")
    shutil.copy(ca.ca_path, directory / "ca.crt")
    return directory


async def _exchange(port: int, ca: ThrowawayCA, data: bytes) -> bytes:
    client = ssl.create_default_context(cafile=str(ca.ca_path))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=SERVICE)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    return answer


def _serve(tmp_path, limits: WebhookLimits):
    ca = ThrowawayCA(tmp_path / "ca")
    cert = webhook_cert.DirectoryCert(str(_directory_cert(tmp_path, ca, "one")))
    return ca, cert, WebhookServer(cert.context, injector(InjectSettings), validate, known, limits=limits)


LIMITED = {
    "oversized body": (b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 1000001\r\n\r\n", b"413 Content Too Large"),
    "oversized headers": (b"POST /validate HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 5000 + b"\r\n\r\n",
                          b"431 Request Header Fields Too Large"),
    "slow client": (b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{", b"408 Request Timeout"),
    "not HTTP": (b"\x16\x03garbage\r\n\r\n", b"400 Bad Request"),
    "bad Content-Length": (b"POST /validate HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"Content-Length is not a number"),
    # a digit to str.isdigit() that int() refuses: once a traceback and a dropped connection
    "superscript Content-Length": ("POST /validate HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
                                   b"Content-Length is not a number"),
}


@pytest.mark.parametrize("data,expected", LIMITED.values(), ids=LIMITED.keys())
def test_limits_answer_and_close(tmp_path, data, expected):
    limits = WebhookLimits(max_body=1_000_000, max_header_bytes=4096, request_timeout=0.3)
    ca, _, server = _serve(tmp_path, limits)

    async def run():
        listener = await server.start("127.0.0.1", 0)
        try:
            return await _exchange(listener.sockets[0].getsockname()[1], ca, data)
        finally:
            listener.close()
            server.close_connections()

    answer = asyncio.run(run())
    assert expected in answer and b"Connection: close" in answer


def test_a_large_review_is_read_whole_on_a_kept_alive_connection(tmp_path):
    """3 MiB: past every buffer of the stream (whose limit is the 16 KiB header bound)."""
    ca, _, server = _serve(tmp_path, WebhookLimits())
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "big", "namespace": "default", "annotations": {"a": "x" * (3 << 20)}},
          "spec": {"hosts": ["big"], "http": [{"route": [{"destination": {"host": "big"}}]}]}}
    review = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "request": {"uid": "u1", "operation": "CREATE", "object": vs}}).encode()
    head = f"POST /validate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(review)}\r\n\r\n"
    ready = b"GET /ready HTTP/1.1\r\nConnection: close\r\n\r\n"

    async def run():
        listener = await server.start("127.0.0.1", 0)
        try:
            return await _exchange(listener.sockets[0].getsockname()[1], ca, head.encode() + review + ready)
        finally:
            listener.close()

    answer = asyncio.run(run())
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and b'"uid":"u1","allowed":true' in answer


def test_a_rotated_certificate_directory_is_served_to_new_connections(tmp_path, monkeypatch):
    monkeypatch.setattr(webhook_cert, "CHECK_INTERVAL", 0.02)
    ca, cert, server = _serve(tmp_path, WebhookLimits())
    first = ssl.PEM_cert_to_DER_cert((tmp_path / "ca" / "one.pem").read_text())

    async def served_cert(port: int) -> bytes:
        client = ssl.create_default_context(cafile=str(ca.ca_path))
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=SERVICE)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return der

    async def run():
        listener = await server.start("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        watcher = asyncio.create_task(cert.run())
        try:
            assert await served_cert(port) == first
            (tmp_path / "certs" / "tls.key").write_text("not a key")  # half-written: the last pair stays
            await asyncio.sleep(0.1)
            assert await served_cert(port) == first
            _directory_cert(tmp_path, ca, "two")
            second = ssl.PEM_cert_to_DER_cert((tmp_path / "ca" / "two.pem").read_text())
            for _ in range(200):  # bounded: 200 x 20 ms
                if await served_cert(port) == second:
                    return True
                await asyncio.sleep(0.02)
            return False
        finally:
            watcher.cancel()
            listener.close()

    assert asyncio.run(run()), "the rotated certificate was never served"


def test_a_certificate_directory_without_a_pair_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no usable tls.crt and tls.key"):
        webhook_cert.DirectoryCert(str(tmp_path))


def test_the_serving_key_is_never_in_the_log(control):
    assert curl(control, "/ready") == (200, "ready\n")
    assert "PRIVATE KEY" not in control.log()


def test_the_answers_are_counted_under_istios_metric_names(control):
    review = json.loads(RECORDED)
    assert curl(control, "/inject", RECORDED)[0] == 200  # patched
    review["request"]["object"]["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    assert curl(control, "/inject", json.dumps(review).encode())[0] == 200  # skipped
    review["request"]["object"]["spec"]["containers"][0]["name"] = "pymesh-proxy"
    del review["request"]["object"]["metadata"]["labels"]["sidecar.istio.io/inject"]
    assert curl(control, "/inject", json.dumps(review).encode())[0] == 200  # refused
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v", "namespace": "d"},
          "spec": {"hosts": ["v"], "http": [{"timeout": "x", "route": [{"destination": {"host": "v"}}]}]}}
    review["request"].update(object=vs, resource={"group": "networking.istio.io", "version": "v1",
                                                  "resource": "virtualservices"})
    assert curl(control, "/validate", json.dumps(review).encode())[0] == 200  # denied
    vs["spec"]["http"][0]["timeout"] = "1s"
    assert curl(control, "/validate", json.dumps(review).encode())[0] == 200  # allowed
    assert curl(control, "/validate", b"{")[0] == 400
    resource = 'group="networking.istio.io",version="v1",resource="virtualservices"'
    expected = {"sidecar_injection_requests_total": 3, "sidecar_injection_success_total": 1,
                "sidecar_injection_skip_total": 1, "sidecar_injection_failure_total": 1,
                f"galley_validation_passed{{{resource}}}": 1,
                f'galley_validation_failed{{{resource},reason="invalid_config"}}': 1,
                'galley_validation_http_error{status="400"}': 1}
    assert {name: control.metric(name) for name in expected} == expected


REFUSED_AT_START = {
    "insecure without a cert dir": (("--insecure",), "--webhook-listen with --insecure needs --webhook-cert-dir"),
    "cert dir without a pair": (("--webhook-cert-dir", "/nonexistent"), "no usable tls.crt and tls.key"),
    "settings file missing": (("--injection-settings", "/nonexistent"), "--injection-settings /nonexistent: No such"),
    "settings with a typo": (("--injection-settings", "{settings}"), "proxyImge: unknown setting"),
}


@pytest.mark.parametrize("extra,message", REFUSED_AT_START.values(), ids=REFUSED_AT_START.keys())
def test_bad_webhook_options_are_refused_at_start_with_the_reason(tmp_path, extra, message):
    settings = tmp_path / "settings.yaml"
    settings.write_text("proxyImge: x\n")
    (tmp_path / "config").mkdir()
    done = subprocess.run([sys.executable, "-m", "pymesh", "control", "serve", "--config-dir", str(tmp_path / "config"),
                           "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--webhook-listen", "127.0.0.1:0",
                           *(arg.format(settings=settings) for arg in extra)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_a_cert_manager_style_directory_serves_the_webhooks_of_an_insecure_control_server(tmp_path):
    """--webhook-cert-dir (tls.crt, tls.key, ca.crt as cert-manager writes them) is the only way
    with --insecure, which has no mesh CA."""
    ca = ThrowawayCA(tmp_path / "ca")
    directory = _directory_cert(tmp_path, ca, "webhook")
    (tmp_path / "config").mkdir()
    server = ControlServer(tmp_path / "config", tmp_path / "control.log", 5.0, None,
                           "--webhook-listen", "127.0.0.1:0", "--webhook-cert-dir", str(directory))
    try:
        server.start()
        done = subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert", str(ca.ca_path),
                               "--resolve", f"{SERVICE}:{server.webhook_port}:127.0.0.1",
                               "-H", "Content-Type: application/json", "--data-binary", "@-",
                               f"https://{SERVICE}:{server.webhook_port}/inject"],
                              input=RECORDED, capture_output=True, timeout=TIMEOUT + 5)
        assert json.loads(done.stdout)["response"]["patchType"] == "JSONPatch", done.stderr
    finally:
        server.stop()
        print(server.log())
