"""The VM proxy's readiness probe (pymesh/proxy/health_probe.py): Kubernetes' threshold semantics
table-driven, and each probe method against real sockets and processes."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys

import pytest

from throwaway_ca import ThrowawayCA

from pymesh.api import model
from pymesh.proxy.health_probe import HealthProbe, Thresholds, check


@pytest.mark.parametrize("success, failure, results, decisions", [
    (1, 3, [True], [True]),
    (1, 3, [False, False], [None, None]),  # undecided until three failures
    (1, 3, [False, False, False], [None, None, False]),
    (1, 3, [True, False, False, True, False, False, False], [True, True, True, True, True, True, False]),
    (2, 1, [True, True, False, True, True], [None, True, False, False, True]),
])
def test_thresholds(success, failure, results, decisions):
    thresholds = Thresholds(success, failure)
    seen = []
    for ok in results:
        thresholds.feed(ok)
        seen.append(thresholds.state)
    assert seen == decisions


def probe(**method) -> model.ReadinessProbe:
    return model.ReadinessProbe(**method)


def test_tcp_probe():
    async def run():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        assert await check(probe(tcp_socket=model.TCPHealthCheck(port=port)), "127.0.0.1") is None
        server.close()
        await server.wait_closed()
        problem = await check(probe(tcp_socket=model.TCPHealthCheck(port=port)), "127.0.0.1")
        assert problem.startswith(f"tcp 127.0.0.1:{port}: ")
    asyncio.run(run())


@pytest.mark.parametrize("status, healthy", [(200, True), (302, True), (404, False), (503, False)])
def test_http_probe(status, healthy):
    async def run():
        heads = []

        async def answer(reader, writer):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        action = model.HTTPHealthCheck(port=port, path="/ready", headers=(model.HTTPHeader("Host", "app.local"),))
        problem = await check(probe(http_get=action), "127.0.0.1")
        server.close()
        assert (problem is None) == healthy, problem
        assert heads[0].startswith(b"GET /ready HTTP/1.1\r\n") and b"host: app.local\r\n" in heads[0]
        if not healthy:
            assert problem == f"GET http://127.0.0.1:{port}/ready: HTTP {status}"
    asyncio.run(run())


def test_https_probe_checks_the_answer_not_the_certificate(tmp_path):
    """As the kubelet's: an app with a certificate the proxy cannot verify is still probed."""
    cert = ThrowawayCA(tmp_path).issue("app", "app.local")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert, cert.key)

    async def run():
        async def answer(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        https = model.HTTPHealthCheck(port=port, path="/", scheme="HTTPS")
        assert await check(probe(http_get=https), "127.0.0.1") is None
        plain = model.HTTPHealthCheck(port=port, path="/")  # HTTP to a TLS port: no HTTP answer
        assert await asyncio.wait_for(check(probe(http_get=plain), "127.0.0.1"), 5) is not None
        server.close()
    asyncio.run(run())


def test_exec_probe():
    async def run():
        assert await check(probe(exec=model.ExecHealthCheck((sys.executable, "-c", "pass"))), "") is None
        problem = await check(probe(exec=model.ExecHealthCheck((sys.executable, "-c", "raise SystemExit(3)"))), "")
        assert problem.endswith("exit status 3")
        assert "No such file" in await check(probe(exec=model.ExecHealthCheck(("/nonexistent/cmd",))), "")
    asyncio.run(run())


def test_a_probe_that_times_out_reports_unhealthy_and_kills_its_command(tmp_path):
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; exec sleep 30"  # sh starts in milliseconds, well within the timeout

    async def run():
        reports = asyncio.Queue()
        runner = HealthProbe(lambda healthy, message: reports.put_nowait((healthy, message)), "127.0.0.1")
        runner.update(probe(exec=model.ExecHealthCheck(("/bin/sh", "-c", script)),
                            timeout_seconds=1, period_seconds=1, failure_threshold=1))
        assert await asyncio.wait_for(reports.get(), 10) == (False, "probe timed out after 1s")
        runner.close()
    asyncio.run(run())
    with pytest.raises(ProcessLookupError):  # killed and reaped when its check timed out
        os.kill(int(pid_file.read_text()), 0)
