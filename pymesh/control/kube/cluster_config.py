"""The mesh configuration a live cluster holds, read once through the API server for `pymesh
analyze --kubernetes`: every config kind (Istio's, pymesh's, the Gateway API's custom resources)
listed, whole (pages followed), in one namespace or all.

A kind whose CRD is not installed (404 for each version it is served under) is skipped and
named; any other failure (403: the user may not list it; the API server unreachable) is an error
of the analysis, because a silently missing kind would make it wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymesh.kube.custom_resources import CUSTOM_RESOURCES, CustomResource

CLUSTER_SCOPED = frozenset({"GatewayClass"})  # listed cluster-wide even for one namespace
# none of the control server's ClusterRole: `pymesh analyze` lists as the user whose kubeconfig it is
API_ACCESS = ()


@dataclass
class ClusterConfig:
    objects: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # the CRDs (<plural>.<group>) not installed
    errors: list[str] = field(default_factory=list)  # kinds that could not be listed, and why


async def read(client, namespace: str | None, kinds: tuple[CustomResource, ...] = CUSTOM_RESOURCES) -> ClusterConfig:
    """Every object of `kinds` in `namespace` (None: all namespaces) through `client`
    (pymesh.control.kube.client.KubeClient)."""
    from pymesh.control.kube.client import KubeApiError

    out = ClusterConfig()
    for resource in kinds:
        scope = None if resource.kind.name in CLUSTER_SCOPED else namespace
        for version in resource.versions:
            try:
                listing = await client.list_all(version, scope)
            except KubeApiError as exc:
                if exc.status == 404:
                    continue  # not served under this version (or no CRD at all): the next one
                out.errors.append(f"cannot list {resource.kind.name} ({version.path(scope)}): {exc}")
                break
            out.objects += [{"apiVersion": version.api_version, "kind": version.kind, **item}
                            for item in listing.get("items") or [] if isinstance(item, dict)]
            break
        else:
            out.skipped.append(f"{resource.versions[0].plural}.{resource.group}")
    return out


async def read_cluster(kubeconfig: str | None, context: str | None, namespace: str | None) -> ClusterConfig:
    """`read` through a client made from the kubeconfig (or in-cluster credentials); a client
    that cannot be made or an API server that cannot be reached is one error."""
    try:
        import aiohttp

        from pymesh.control.kube.client import KubeClient
    except ImportError as exc:
        return ClusterConfig(errors=[f"--kubernetes needs the kubernetes extra (pip install 'pymesh[kubernetes]'): {exc}"])
    try:
        client = await KubeClient.connect(kubeconfig, context)
    except Exception as exc:  # the library's config errors have no common base
        return ClusterConfig(errors=[f"cannot use the kubeconfig: {exc}"])
    try:
        return await read(client, namespace)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return ClusterConfig(errors=[f"cannot reach the API server at {client.host}: {exc}"])
    finally:
        await client.close()
