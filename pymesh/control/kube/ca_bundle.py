"""Keeps the `caBundle` of the control server's own webhook configurations equal to the CA of its
webhook certificate (pymesh.kube.webhook_configs computes the patch): at start, when the bundle
changes (a rotated root, a new cert-manager CA), and every `interval` seconds, since a `kubectl
apply` of the manifests resets the field. Needs only `get` and `patch` on the two configurations,
by name (kube/base/rbac.yaml). A configuration that is not installed is logged once, then retried."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from pymesh.control.kube.client import JSON_PATCH, KubeApiError, KubeClient
from pymesh.kube.resources import Access
from pymesh.kube.webhook_configs import CONFIGURATIONS, ca_bundle_patch

log = logging.getLogger("pymesh.control.webhook")

INTERVAL = 30.0  # seconds between checks
CONFLICT_RETRIES = 3  # a configuration changed between our get and patch: read it again, at most this often
API_ACCESS = tuple(Access(resource, verb, names=(name,))
                   for resource, name in CONFIGURATIONS for verb in ("get", "patch"))


class CaBundlePatcher:
    def __init__(self, client: KubeClient, bundle: Callable[[], bytes | None], service: str, namespace: str,
                 interval: float = INTERVAL):
        self._client = client
        self._bundle = bundle
        self._service, self._namespace = service, namespace
        self.interval = interval
        self._wake = asyncio.Event()
        self._missing: set[str] = set()
        self.patched = 0  # patches the API server accepted, for tests and logs

    def changed(self) -> None:
        """The bundle changed: patch now (called from the certificate's on_bundle)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.sync()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    async def sync(self) -> None:
        bundle = self._bundle()
        if not bundle:
            return
        for resource, name in CONFIGURATIONS:
            try:
                await self._sync_one(resource, name, bundle)
            except KubeApiError as error:
                log.error("webhook caBundle: %s %s: %s", resource.kind, name, error)
            except OSError as error:  # the API server unreachable: the next round retries
                log.error("webhook caBundle: cannot reach the API server: %s", error)

    async def _sync_one(self, resource, name: str, bundle: bytes) -> None:
        for _ in range(CONFLICT_RETRIES):
            try:
                config = await self._client.get(resource, name)
            except KubeApiError as error:
                if error.status != 404:
                    raise
                if name not in self._missing:
                    log.warning("webhook caBundle: %s %s is not installed (kube/base/webhooks.yaml); "
                                "retrying every %gs", resource.kind, name, self.interval)
                    self._missing.add(name)
                return
            self._missing.discard(name)
            patch = ca_bundle_patch(config, bundle, self._service, self._namespace)
            if not patch:
                return
            try:
                await self._client.patch(resource, name, patch, content_type=JSON_PATCH)
            except KubeApiError as error:
                if error.status in (409, 422):  # the test of resourceVersion failed: changed meanwhile
                    continue
                raise
            self.patched += 1
            log.info("webhook caBundle: %s %s patched (%d webhooks)", resource.kind, name, len(patch) - 1)
            return
