"""One differential run: start the recording upstreams and both proxies once, send the whole corpus
through each (lanes in parallel, mutations within a lane one after another), stop the proxies so
their access logs are complete and every upstream connection has ended, and hand back what each
side saw.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import client
from corpus import Mutation
from launch import Envoy, Lane, Pymesh
from proxy_harness import free_ports, wait_until
from recorder import Connection, RecordingUpstream

LANES = 8  # per proxy; each lane is one thread sending one mutation at a time
SETTLE_TIMEOUT = 20.0


@dataclass
class ProxyRun:
    """What one proxy did with the corpus: per mutation the client's view, plus its access log
    and every connection its upstreams received."""

    name: str
    views: dict[str, client.ClientView]
    log: list[dict]
    connections: list[Connection]
    stderr: str


def _lanes(proxy: str) -> list[Lane]:
    return [Lane(port, RecordingUpstream(f"{proxy}-lane{i}")) for i, port in enumerate(free_ports(LANES))]


def _drive(lane: Lane, mutations: list[Mutation], views: dict[str, Any], send: Callable) -> None:
    for mutation in mutations:
        lane.upstream.current = mutation.name
        views[mutation.name] = send(lane.port, mutation)


def run(workdir: Path, mutations: list[Mutation], kinds: tuple = (Pymesh, Envoy),
        send: Callable = client.run) -> dict[str, ProxyRun]:
    """`kinds` and `send` let another corpus (HTTP/2 frame sequences) reuse the same run: any case
    with a `name`, and a client function giving its view."""
    with contextlib.ExitStack() as stack:
        proxies = {}
        lanes = {}
        for kind in kinds:
            lanes[kind.name] = _lanes(kind.name)
            for lane in lanes[kind.name]:
                stack.callback(lane.upstream.stop)
            proxy = kind(workdir / kind.name, lanes[kind.name])
            stack.callback(proxy.stop)
            proxy.start()
            proxies[kind.name] = proxy
        views: dict[str, dict[str, client.ClientView]] = {name: {} for name in proxies}
        with ThreadPoolExecutor(max_workers=LANES * len(proxies)) as pool:
            jobs = [pool.submit(_drive, lane, mutations[i::LANES], views[name], send)
                    for name in proxies for i, lane in enumerate(lanes[name])]
            for job in jobs:
                job.result()
        out = {}
        for name, proxy in proxies.items():
            proxy.stop()
            upstreams = [lane.upstream for lane in lanes[name]]
            wait_until(lambda: all(u.all_closed() for u in upstreams), SETTLE_TIMEOUT, 0.05,
                       f"{name}'s upstream connections to end")
            out[name] = ProxyRun(name, views[name], proxy.log(), [c for u in upstreams for c in u.snapshot()],
                                 proxy.stderr())
        return out
