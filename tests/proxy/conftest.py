"""Fixtures of the data-plane tests: upstream servers and proxies that are always cleaned up."""

from __future__ import annotations

import pytest

from proxy_harness import CURL_PROTOCOLS, Proxy, TcpServer, Upstream


@pytest.fixture
def upstreams():
    """upstreams(name, handler=None) -> a running Upstream; all stopped at teardown."""
    started = []

    def start(name: str = "upstream", handler=None) -> Upstream:
        server = Upstream(name, handler)
        started.append(server)
        return server

    def start_tcp(mode: str = "echo", name: str = "tcp") -> TcpServer:
        server = TcpServer(mode, name)
        started.append(server)
        return server

    def start_tls(name: str, cert) -> "TlsServer":
        from tls_peers import TlsServer

        server = TlsServer(name, cert)
        started.append(server)
        return server

    start.tcp = start_tcp
    start.tls = start_tls
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def proxies(tmp_path, request):
    """proxies(resources, **options) -> a started, ready Proxy; every one is killed at teardown
    (its stderr is printed there, so a failing test shows it)."""
    started: list[Proxy] = []

    def start(resources, *, wait: bool = True, **options) -> Proxy:
        proxy = Proxy(tmp_path / f"proxy{len(started)}", resources, name="proxy", **options)
        started.append(proxy)
        return proxy.start(wait=wait)

    yield start
    for proxy in started:
        proxy.kill()
        stderr = proxy.stderr()
        if stderr:
            print(f"--- proxy stderr ({proxy.config_path.parent.name}) ---\n{stderr[-6000:]}")


@pytest.fixture(params=sorted(CURL_PROTOCOLS))
def via(request) -> tuple[str, ...]:
    """curl's options for the client protocol: a test taking `via` runs over HTTP/1.1 and h2c."""
    return CURL_PROTOCOLS[request.param]
