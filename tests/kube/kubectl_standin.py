"""The STAND-IN API server (tests/kube/apiserver.py) with the discovery documents kubectl reads
before anything else (/api, /apis, /api/v1, /apis/GROUP/VERSION: the legacy, unaggregated
forms, which kubectl falls back to), so that the real `kubectl apply -f` of Istio's samples can
be a test's client. No OpenAPI documents: kubectl runs with --validate=false and, with no schema
for a custom resource, updates it with a JSON merge patch, which the stand-in applies."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from apiserver import StandInAPIServer

KUBECTL = shutil.which("kubectl")
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


class KubectlStandIn(StandInAPIServer):
    def discovery(self, path: str) -> dict | None:
        """The discovery document at `path`, None for any other path."""
        served = list(self.types.values())
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for resource in served:
                if resource.group and resource.version not in groups.setdefault(resource.group, []):
                    groups[resource.group].append(resource.version)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
                for group, versions in sorted(groups.items())]}
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            group, version = "", "v1"
        elif len(parts) == 3 and parts[0] == "apis":
            group, version = parts[1], parts[2]
        else:
            return None
        listed = [r for r in served if (r.group, r.version) == (group, version)]
        if not listed:
            return None
        resources = []
        for r in listed:
            resources.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": VERBS})
            resources.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else "v1",
                "resources": resources}

    async def _answer(self, request, writer: asyncio.StreamWriter) -> bool:
        authorized = not self.token or request.headers.get("authorization") == f"Bearer {self.token}"
        document = self.discovery(request.path) if request.method == "GET" and authorized else None
        if document is None:
            return await super()._answer(request, writer)
        await self._send(writer, 200, document)
        return True


def kubectl(server: KubectlStandIn, *args: str, stdin: str | None = None, cache: Path) -> subprocess.CompletedProcess:
    """`kubectl --kubeconfig <the stand-in's> ARGS`, bounded in time; its discovery cache in `cache`."""
    return subprocess.run([KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(cache),
                           "--request-timeout", "20s", *args],
                          input=stdin, capture_output=True, text=True, timeout=60)
