"""Every upstream pool of a worker, one per (cluster, endpoint, protocol, TLS target): HTTP/1.1 pools keep
idle connections (pymesh.proxy.upstream), HTTP/2 pools multiplex streams over few connections
(pymesh.proxy.upstream_h2). One sweep a second closes connections idle past their timeout."""

from __future__ import annotations

import asyncio
import time

from pymesh.proxy.upstream import EndpointPool
from pymesh.proxy.upstream_h2 import H2Pool
from pymesh.proxy.upstream_tls import TlsTarget
from pymesh.routing.snapshot import Cluster, Endpoint

SWEEP_INTERVAL = 1.0


class Pools:
    """Every endpoint pool of this proxy, keyed by (cluster name, endpoint address:port, HTTP/2,
    TLS target or None for plaintext)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pools: dict[tuple[str, str, bool, TlsTarget | None], EndpointPool] = {}
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def get(self, cluster: Cluster, endpoint: Endpoint, stats: dict[str, int], http2: bool = False,
            tls: TlsTarget | None = None) -> EndpointPool:
        key = (cluster.name, endpoint.key, http2, tls)
        pool = self.pools.get(key)
        if pool is None:
            kind = H2Pool if http2 else EndpointPool
            pool = self.pools[key] = kind(cluster, endpoint, self.loop, stats, tls)
        return pool

    def open_by_host(self) -> dict[tuple[str, str], int]:
        """Open (or opening) connections by (cluster name, endpoint address:port)."""
        out: dict[tuple[str, str], int] = {}
        for (cluster, host, _, _), pool in self.pools.items():
            out[cluster, host] = out.get((cluster, host), 0) + pool.open
        return out

    def retain(self, clusters) -> None:
        """After a config change: reconfigure surviving pools, close idle ones that are gone
        (a TLS pool whose cluster's TLS settings were replaced is gone too)."""
        live = {(c.name, e.key): c for c in clusters.values() for e in c.endpoints}
        for key, pool in list(self.pools.items()):
            cluster = live.get(key[:2])
            if cluster is None or (pool.tls is not None and pool.tls.origin.closed):
                pool.close_idle()
                if not pool.active:
                    del self.pools[key]
            else:
                pool.configure(cluster)

    def _sweep(self) -> None:
        now = time.monotonic()
        for pool in self.pools.values():
            pool.sweep(now)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def close(self) -> None:
        self._sweeper.cancel()
        for pool in self.pools.values():
            pool.close_idle()
