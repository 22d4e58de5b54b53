"""The admission webhooks as `pymesh control serve` runs them (`--webhook-listen`): the serving
certificate (webhook_cert), the validation of Istio's and pymesh's resources by pymesh's own
loader (pymesh.kube.custom_resources), and the HTTPS listener (webhook). Started and stopped
with the control server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from pymesh.api.errors import ConfigError
from pymesh.control.kube.settings_file import SettingsFile
from pymesh.control.kube.webhook import WebhookServer
from pymesh.control.kube.webhook_cert import DirectoryCert, MeshCaCert, service_dns_names
from pymesh.kube import custom_resources
from pymesh.kube.admission import Injector
from pymesh.kube.inject import inject_pod, is_injected
from pymesh.kube.selection import injection_required
from pymesh.kube.webhook_configs import VALIDATED_GROUPS
from pymesh.kube.inject_settings import InjectSettings

log = logging.getLogger("pymesh.control.webhook")


@dataclass(frozen=True)
class WebhookOptions:
    listen: tuple[str, int]
    cert_dir: str = ""  # tls.crt/tls.key (a cert-manager Secret); empty: issued by the mesh CA
    service: str = "pymesh-control"  # the Service the API server calls, for the certificate's names
    namespace: str = "pymesh-system"
    settings_file: str = ""  # --injection-settings: what kube-inject --settings reads; "": the defaults
    patch_ca_bundle: bool = False  # --webhook-ca-bundle patch: keep our webhook configurations' caBundle
    kubeconfig: str | None = None  # None: in the cluster, else $KUBECONFIG or ~/.kube/config


def known(kind: str, api_version: str) -> bool:
    """Whether the validating webhook validates this kind: the groups of VALIDATED_GROUPS, which
    the webhook configuration's rules send. Others (the Gateway API's among them, should a
    configuration send them anyway) are allowed untouched."""
    return api_version.rpartition("/")[0] in VALIDATED_GROUPS


def injector(current: Callable[[], InjectSettings]) -> Injector:
    """The pod-level injector with the settings in force (`current()`, read per request: they
    are reloaded). The namespace's labels are not in the AdmissionReview: the webhook
    configuration's namespaceSelector already decided (as Istio's), so only the pod's own labels
    and annotations and the policy are looked at here."""
    def inject(pod: dict, namespace: str) -> dict | None:
        settings = current()
        if is_injected(pod) or not injection_required(pod, None, settings, namespace_name=namespace):
            return None
        return inject_pod(pod, None, settings)

    return inject


def validate(obj: dict) -> list[ConfigError]:
    """Errors and warnings (ConfigWarning: not denied, shown to the kubectl user) of one object."""
    result = custom_resources.load_object(obj)
    return [*result.errors, *result.warnings]


class Webhooks:
    """The certificate, the listener and, with `patch_ca_bundle`, the caBundle patcher."""

    def __init__(self, options: WebhookOptions, mesh_ca, ready: Callable[[], bool], metrics=None):
        self.options = options
        self._patcher = None  # a ca_bundle.CaBundlePatcher with patch_ca_bundle, once started
        if options.cert_dir:
            self.cert = DirectoryCert(options.cert_dir, self._bundle_changed)
        elif mesh_ca is not None:
            self.cert = MeshCaCert(mesh_ca, service_dns_names(options.service, options.namespace), self._bundle_changed)
        else:
            raise ValueError("--webhook-listen with --insecure needs --webhook-cert-dir (there is no mesh CA "
                             "to issue the webhook's certificate)")
        self.settings = SettingsFile(options.settings_file) if options.settings_file else None
        settings = (lambda: self.settings.settings) if self.settings else InjectSettings
        self.listener = WebhookServer(self.cert.context, injector(settings), validate, known, ready=ready,
                                      observe=metrics.webhook if metrics is not None else lambda *answer: None)
        self._tasks: list[asyncio.Task] = []
        self._client = None  # our own, when the control server has none to lend
        self.address: tuple[str, int] = options.listen

    def _bundle_changed(self, bundle: bytes) -> None:
        if self._patcher is not None:
            self._patcher.changed()

    async def start(self, client=None) -> asyncio.base_events.Server:
        """Listen; with patch_ca_bundle, patch through `client` (the control server's, with
        --kubernetes) or a client of our own."""
        server = await self.listener.start(*self.options.listen)
        self.address = server.sockets[0].getsockname()[:2]
        self._tasks.append(asyncio.create_task(self.cert.run()))
        if self.settings is not None:
            self._tasks.append(asyncio.create_task(self.settings.run()))
        log.info("admission webhooks on https://%s:%d (/inject, /validate)", *self.address)
        if self.options.patch_ca_bundle:
            await self._start_patcher(client)
        return server

    async def _start_patcher(self, client) -> None:
        try:  # the API server's client is the kubernetes extra's; the listener alone needs none of it
            from pymesh.control.kube.ca_bundle import CaBundlePatcher
            from pymesh.control.kube.client import KubeClient
        except ImportError as exc:
            log.error("webhook caBundle: not patched: --webhook-ca-bundle patch needs the kubernetes extra "
                      "(pip install 'pymesh[kubernetes]'): %s", exc)
            return
        if client is None:
            try:
                client = self._client = await KubeClient.connect(self.options.kubeconfig)
            except (OSError, ValueError) as exc:  # the kubernetes library's config errors are ValueErrors too
                log.error("webhook caBundle: not patched, no API server client: %s", exc)
                return
        self._patcher = CaBundlePatcher(client, lambda: self.cert.ca_bundle_pem, self.options.service,
                                        self.options.namespace)
        self._tasks.append(asyncio.create_task(self._patcher.run()))

    async def stop(self) -> None:
        self.listener.close_connections()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
