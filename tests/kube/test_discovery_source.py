"""The control server's discovery source (pymesh.control.kube.discovery_source) on the STAND-IN
API server of tests/kube/apiserver.py: informers per namespace with --namespace, the merge with
the file configuration (Kubernetes services first), the translation redone only after a change."""

import asyncio

from kube_async import Changes, client_for, run
from pymesh.api import model
from pymesh.control.kube.discovery_source import KubernetesDiscovery
from pymesh.control.kube.informer import Backoff


def service(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}}


async def discovering(apiserver, namespaces=()):
    client = await client_for(apiserver)
    changes = Changes()
    source = KubernetesDiscovery(client, changes, namespaces, backoff=Backoff(initial=0.05, maximum=0.2))
    await asyncio.wait_for(source.start(), 10)
    return client, changes, source


def hosts(config: model.MeshConfig) -> list[str]:
    return [h for se in config.service_entries for h in se.hosts]


def test_only_the_namespaces_given(apiserver):
    """Stand-in API server. With namespaces, one informer per namespace and resource, and no
    cluster-wide Namespaces list (least privilege); other namespaces' Services are not seen."""
    apiserver.apply(service("reviews", "shop"))
    apiserver.apply(service("ratings", "other"))

    async def body():
        client, changes, source = await discovering(apiserver, ("shop",))
        try:
            assert source.synced
            assert {(s["resource"], s["namespace"]) for s in source.status()} == {
                ("services", "shop"), ("endpointslices", "shop"), ("pods", "shop")}
            assert hosts(source.merged(model.MeshConfig())) == ["reviews.shop.svc.cluster.local"]
            assert all("/namespaces/shop/" in t for m, t in apiserver.requests if m == "GET")
        finally:
            await source.stop()
            await client.close()
    run(body())


def test_merged_puts_the_cluster_first_and_is_redone_only_after_a_change(apiserver):
    apiserver.apply(service("reviews", "default"))
    files = model.MeshConfig(service_entries=(model.ServiceEntry(
        metadata=model.Metadata(name="external"), hosts=("api.example.com",)),))

    async def body():
        client, changes, source = await discovering(apiserver)
        try:
            merged = source.merged(files)
            assert hosts(merged) == ["reviews.default.svc.cluster.local", "api.example.com"]
            assert source.merged(files) is merged  # no change: the same object, nothing recomputed
            apiserver.apply(service("ratings", "default"))
            await changes.until(lambda: source.merged(files) is not merged, "the new Service")
            assert hosts(source.merged(files))[:2] == ["ratings.default.svc.cluster.local",
                                                        "reviews.default.svc.cluster.local"]
        finally:
            await source.stop()
            await client.close()
    run(body())
