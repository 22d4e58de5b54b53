"""ProxyConfig `concurrency` sets the worker count of a static-mode proxy started without
--concurrency; an explicit --concurrency wins."""

from __future__ import annotations

import pytest

from proxy_harness import children, free_port, http_mesh, wait_until

pytestmark = pytest.mark.timeout(90)


def proxy_config(concurrency: int, selector: dict | None = None) -> dict:
    spec = {"concurrency": concurrency, **({"selector": {"matchLabels": selector}} if selector else {})}
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
            "metadata": {"name": "workers", "namespace": "default"}, "spec": spec}


def test_a_selecting_proxy_config_sets_the_workers(upstreams, proxies):
    up = upstreams("up")
    proxy = proxies(http_mesh(free_port(), {"v1": up}) + [proxy_config(2, {"app": "productpage"})],
                    labels="app=productpage")
    wait_until(lambda: len(children(proxy.pid)) == 2, 10, what="two worker processes")
    assert "2 worker(s), from ProxyConfig default/workers" in proxy.stderr()


def test_an_explicit_concurrency_wins(upstreams, proxies):
    up = upstreams("up")
    port = free_port()
    proxy = proxies(http_mesh(port, {"v1": up}) + [proxy_config(2)], extra_args=["--concurrency", "1"])
    assert children(proxy.pid) == set()  # one process, no workers (it is ready: they would be forked by now)
    assert "from ProxyConfig" not in proxy.stderr()
