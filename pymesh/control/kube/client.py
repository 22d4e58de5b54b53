"""The Kubernetes API server's client: raw JSON in and out for any ResourceType, over
kubernetes_asyncio's ApiClient (its generic call path, so custom resources need no generated
classes). Authentication is the library's: in-cluster (the service account's token, refreshed
from its projected file, and the cluster's CA) or a kubeconfig (client certificates, tokens, exec
plugins). TLS is verified against the cluster's CA; a kubeconfig that asks to skip verification is
obeyed only with a warning in the log, never silently."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import AsyncIterator

import aiohttp

from pymesh.kube.resources import ResourceType

log = logging.getLogger("pymesh.control.kube")

WATCH_TIMEOUT = 300  # seconds the server keeps one watch open (client-go picks 5-10 minutes)
READ_SLACK = 30  # seconds of silence past the watch's timeout before the client gives up on it
REQUEST_TIMEOUT = 30  # seconds for one list page or one write
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeApiError(Exception):
    """A failure the API server reported (a Status object), or a malformed answer."""

    def __init__(self, status: int, reason: str, message: str, body: dict | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message, self.body = status, reason, message, body or {}

    @property
    def gone(self) -> bool:
        """410: the resourceVersion or continue token is too old; relist."""
        return self.status == 410

    @classmethod
    def from_status(cls, status: dict, http_status: int = 0) -> "KubeApiError":
        return cls(int(status.get("code") or http_status), str(status.get("reason") or ""),
                   str(status.get("message") or ""), status)


async def _lines(response: aiohttp.ClientResponse, resource: ResourceType) -> AsyncIterator[bytes]:
    """The watch stream's lines; one longer than the read buffer is the server's error, not ours."""
    try:
        async for line in response.content:
            yield line
    except ValueError as error:  # aiohttp: "Line is too long"
        raise KubeApiError(200, "BadResponse", f"a watch event of {resource.plural}: {error}") from None


def default_kubeconfig() -> Path:
    """KUBECONFIG's first file, else ~/.kube/config, as kubectl looks."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((part for part in env.split(os.pathsep) if part), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


class KubeClient:
    """One API server, any resource type: list, watch, get, create, patch, delete, post."""

    def __init__(self, api_client, reload=None) -> None:
        self._api = api_client
        self._reload = reload  # coroutine function refreshing credentials after a 401, or None
        if not api_client.configuration.verify_ssl:
            log.warning("kubernetes: TLS verification of the API server is OFF, as the kubeconfig asks "
                        "(insecure-skip-tls-verify)")

    @property
    def host(self) -> str:
        return self._api.configuration.host

    @classmethod
    async def connect(cls, kubeconfig: str | os.PathLike | None = None, context: str | None = None) -> "KubeClient":
        """In the cluster (KUBERNETES_SERVICE_HOST set) unless a kubeconfig is named; else the
        kubeconfig at `kubeconfig`, KUBECONFIG or ~/.kube/config."""
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)  # refreshes the token file itself
                return cls(client.ApiClient(configuration))
            path = Path(kubeconfig) if kubeconfig is not None else default_kubeconfig()
            if not path.is_file():
                raise ValueError(f"no kubeconfig at {path} and not in a cluster (KUBERNETES_SERVICE_HOST unset)")
            loader = await config.load_kube_config(config_file=str(path), context=context,
                                                   client_configuration=configuration, persist_config=False)
        except config.ConfigException as error:
            raise ValueError(f"kubernetes configuration: {error}") from None
        return cls(client.ApiClient(configuration), reload=lambda: loader.load_and_set(configuration))

    async def close(self) -> None:
        await self._api.close()

    async def _request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                       body: object = None, content_type: str = "application/json",
                       timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """The response, status unchecked and body unread; one retry after a 401 with fresh credentials."""
        for attempt in (1, 2):
            response = await self._api.call_api(
                path, method, query_params=query or [], body=body,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout or aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
            if response.status != 401 or attempt == 2 or self._reload is None:
                return response
            response.release()
            await self._reload()
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, **kwargs) -> dict:
        response = await self._request(method, path, **kwargs)
        try:
            raw = await response.read()
        finally:
            response.release()
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            document = None
        if document is None:  # a proxy's or the mux's plain text ("404 page not found")
            text = raw[:200].decode("utf-8", "replace").strip()
            raise KubeApiError(response.status, response.reason or "BadResponse", f"{method} {path}: {text!r}")
        if not 200 <= response.status < 300:
            if isinstance(document, dict) and document.get("kind") == "Status":
                raise KubeApiError.from_status(document, response.status)
            raise KubeApiError(response.status, response.reason or "", f"{method} {path}")
        if not isinstance(document, dict):
            raise KubeApiError(response.status, "BadResponse", f"not a JSON object from {method} {path}")
        return document

    async def list(self, resource: ResourceType, namespace: str | None = None, limit: int = 500,
                   continue_token: str | None = None) -> dict:
        """One page of the collection, the list JSON as the server sent it (metadata.continue set
        while more pages follow)."""
        query = [("limit", str(limit))] + ([("continue", continue_token)] if continue_token else [])
        return await self._json("GET", resource.path(namespace), query=query)

    async def list_all(self, resource: ResourceType, namespace: str | None = None, limit: int = 500) -> dict:
        """Every page, followed through `continue`: {"metadata": {"resourceVersion"}, "items"}. All
        pages are one consistent snapshot at the first page's resourceVersion."""
        first = await self.list(resource, namespace, limit)
        items = list(first.get("items") or [])
        token = (first.get("metadata") or {}).get("continue")
        while token:
            page = await self.list(resource, namespace, limit, token)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
        return {**first, "metadata": {"resourceVersion": (first.get("metadata") or {}).get("resourceVersion", "")},
                "items": items}

    async def watch(self, resource: ResourceType, resource_version: str, namespace: str | None = None,
                    timeout_seconds: int = WATCH_TIMEOUT) -> AsyncIterator[dict]:
        """The watch events after `resource_version`, one JSON object per line ({"type", "object"}),
        until the server ends the watch. An HTTP error (410 included) raises KubeApiError; an ERROR
        event is yielded as it came."""
        query = [("watch", "1"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(timeout_seconds))]
        timeout = aiohttp.ClientTimeout(total=None, connect=REQUEST_TIMEOUT, sock_read=timeout_seconds + READ_SLACK)
        response = await self._request("GET", resource.path(namespace), query=query, timeout=timeout)
        try:
            if response.status != 200:
                raw = await response.read()
                try:
                    status = json.loads(raw)
                except ValueError:
                    status = {}
                if isinstance(status, dict) and status.get("kind") == "Status":
                    raise KubeApiError.from_status(status, response.status)
                raise KubeApiError(response.status, response.reason or "", f"watch {resource.plural}")
            async for line in _lines(response, resource):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise KubeApiError(200, "BadResponse", f"a watch event of {resource.plural} is not JSON") from None
                if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                    raise KubeApiError(200, "BadResponse", f"a watch event of {resource.plural} has no object")
                yield event
        finally:
            response.close()  # an abandoned stream must not go back to the pool half read

    async def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict:
        return await self._json("GET", resource.path(namespace, name))

    async def create(self, resource: ResourceType, obj: dict, namespace: str | None = None) -> dict:
        """POST the object to its collection (its namespace from `namespace` or its metadata)."""
        namespace = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self._json("POST", resource.path(namespace), body=obj)

    async def post(self, resource: ResourceType, body: dict) -> dict:
        """POST to a virtual, cluster-wide resource (TokenReview, SubjectAccessReview): the answer."""
        return await self._json("POST", resource.path(), body=body)

    async def patch(self, resource: ResourceType, name: str, patch: dict | list, namespace: str | None = None,
                    subresource: str | None = None, content_type: str = MERGE_PATCH) -> dict:
        """A merge patch (or a JSON patch, with content_type=JSON_PATCH), of the object or of its
        `subresource` ("status")."""
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return await self._json("PATCH", path, body=patch, content_type=content_type)

    async def delete(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict:
        return await self._json("DELETE", resource.path(namespace, name))
