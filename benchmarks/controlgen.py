"""The mesh the control-plane benchmark serves, the change it measures, and who its proxies are.

50 services in 5 namespaces (`svc-<i>` in `ns-<i // 10>`), each a ServiceEntry with four static
endpoints and a DestinationRule with subsets v1/v2 (one file per service), and a VirtualService
with a header-matched canary route, a weighted /api/ route with timeout and retries, and a
default route (a file of its own, as a GitOps tree keeps them). The measured change rewrites the
weights of svc-0's VirtualService. With `scoped`, each namespace also has a Sidecar whose egress
is "./*", so a proxy sees only its own namespace's services and the change affects the proxies
of ns-0 alone.

Simulated proxy i is a replica of service i % 50 (labels app and version, like a Deployment's
pods): proxies of one service and version share a view, so the server computes 100 distinct
views. Each has its own address, so it registers as a WorkloadEntry, but no ServiceEntry selects
registered proxies, so connecting proxies change nobody's view.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

API = "networking.istio.io/v1"
SERVICES = 50
PER_NAMESPACE = 10
CHANGED = 0  # the service whose VirtualService the measured change rewrites
# (v1 weight, v2 weight) of the changed route: the initial one, then one per change, cycling
WEIGHTS = [(90, 10), (80, 20), (70, 30), (60, 40), (50, 50), (40, 60), (30, 70), (20, 80)]


def namespace(service: int) -> str:
    return f"ns-{service // PER_NAMESPACE}"


def host(service: int) -> str:
    return f"svc-{service}.{namespace(service)}.svc.cluster.local"


def _meta(name: str, service: int) -> dict:
    return {"name": name, "namespace": namespace(service)}


def service_docs(i: int) -> list[dict]:
    """The ServiceEntry and DestinationRule of service i."""
    ns_index = i // PER_NAMESPACE
    endpoints = [{"address": f"10.{ns_index}.{i}.{e + 1}", "ports": {"http": 8080},
                  "labels": {"app": f"svc-{i}", "version": "v1" if e < 3 else "v2"}} for e in range(4)]
    entry = {"apiVersion": API, "kind": "ServiceEntry", "metadata": _meta(f"svc-{i}", i),
             "spec": {"hosts": [host(i)], "location": "MESH_INTERNAL", "resolution": "STATIC",
                      "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "endpoints": endpoints}}
    rule = {"apiVersion": API, "kind": "DestinationRule", "metadata": _meta(f"svc-{i}", i),
            "spec": {"host": host(i),
                     "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"},
                                       "connectionPool": {"tcp": {"connectTimeout": "1s"},
                                                          "http": {"idleTimeout": "60s"}}},
                     "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                 {"name": "v2", "labels": {"version": "v2"}}]}}
    return [entry, rule]


def virtual_service(i: int, weights: tuple[int, int]) -> dict:
    dest = lambda subset: {"host": host(i), "subset": subset}  # noqa: E731
    return {"apiVersion": API, "kind": "VirtualService", "metadata": _meta(f"svc-{i}", i),
            "spec": {"hosts": [host(i)], "http": [
                {"name": "canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
                 "route": [{"destination": dest("v2")}]},
                {"name": "api", "match": [{"uri": {"prefix": "/api/"}}], "timeout": "5s",
                 "retries": {"attempts": 2, "perTryTimeout": "1s", "retryOn": "5xx,connect-failure"},
                 "route": [{"destination": dest("v1"), "weight": weights[0]},
                           {"destination": dest("v2"), "weight": weights[1]}]},
                {"name": "default", "route": [{"destination": dest("v1")}]},
            ]}}


def sidecar(ns_index: int) -> dict:
    return {"apiVersion": API, "kind": "Sidecar", "metadata": {"name": "default", "namespace": f"ns-{ns_index}"},
            "spec": {"egress": [{"hosts": ["./*"]}]}}


def _dump(docs: list[dict]) -> str:
    return "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def vs_path(directory: Path, service: int = CHANGED) -> Path:
    return directory / f"vs-svc-{service}.yaml"


def write_mesh(directory: Path, scoped: bool) -> None:
    """The whole mesh, one file per service plus one per VirtualService (and the Sidecars)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(SERVICES):
        (directory / f"svc-{i}.yaml").write_text(_dump(service_docs(i)))
        vs_path(directory, i).write_text(_dump([virtual_service(i, WEIGHTS[0])]))
    if scoped:
        (directory / "sidecars.yaml").write_text(_dump([sidecar(k) for k in range(SERVICES // PER_NAMESPACE)]))


def change_text(step: int) -> str:
    """svc-0's VirtualService for change number `step` (1, 2, ...): different weights each time."""
    return _dump([virtual_service(CHANGED, WEIGHTS[1 + (step - 1) % (len(WEIGHTS) - 1)])])


def prepare(path: Path, text: str) -> Path:
    """Write `text` to a hidden temporary beside `path`, flushed, ready for `os.replace`; the
    rename is then the one step the server sees (as editors and `kubectl cp` do)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    return tmp


# --- the simulated proxies ---------------------------------------------------------------------


def node_fields(i: int) -> dict:
    """Node i's fields for pymesh.api.wire.Node (plain data, to build it in a worker process)."""
    service = i % SERVICES
    replica = i // SERVICES
    version = "v2" if replica % 4 == 3 else "v1"
    return {
        "id": f"svc-{service}-{version}-{replica:04d}.{namespace(service)}",
        "workload": f"svc-{service}-{version}",
        "namespace": namespace(service),
        "service_account": f"svc-{service}",
        "labels": {"app": f"svc-{service}", "version": version},
        "addresses": (f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}",),
        "ports": {"http": 8080},
    }


def affected(i: int, scoped: bool) -> bool:
    """Whether the change to svc-0's VirtualService is in proxy i's view."""
    return not scoped or namespace(i % SERVICES) == namespace(CHANGED)
