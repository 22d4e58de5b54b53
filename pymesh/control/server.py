"""`pymesh control serve`, assembled: config store and watcher, registry, mesh generations, push
hub, the HTTP/2 listener for proxies and the admin listener. Each piece has its own module; this
one only wires them and owns start and stop."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from pymesh.api import limits as input_limits
from pymesh.api import wire
from pymesh.api.limits import Limits
from pymesh.control import bounds, persist, scrape_targets
from pymesh.control.admin import AdminServer
from pymesh.control.authority import CaOptions, MeshCA, load_authority
from pymesh.control.bounds import ConnectionLimits, Gate
from pymesh.control.h2server import Request, serve
from pymesh.control.hub import Hub
from pymesh.control.kube.options import KubeOptions
from pymesh.control.mesh import Mesh
from pymesh.control.mesh_api import MeshApi
from pymesh.control.metrics import ControlMetrics
from pymesh.control.registry import Registry
from pymesh.control.scrape import Scraper
from pymesh.control.signing import Signer
from pymesh.control import filter_code
from pymesh.control.store import ConfigStore
from pymesh.routing import gateway_api
from pymesh.control.token_api import TokenApi
from pymesh.control.tokens import TokenStore
from pymesh.control.traces import TraceStore
from pymesh.control.watch import Watcher

log = logging.getLogger("pymesh.control")


@dataclass(frozen=True)
class ControlOptions:
    config_dir: str | None  # None: no files (--kubernetes only)
    listen: tuple[str, int] = ("127.0.0.1", 15010)
    admin: tuple[str, int] = ("127.0.0.1", 15014)
    data_dir: str | None = None
    debounce: float = 0.1
    max_debounce: float = 1.0
    grace: float = 5.0
    workload_entry_grace: float = 10.0  # of auto-registered proxies (Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD)
    poll_interval: float = 0.1
    limits: Limits = input_limits.DEFAULT
    connection_limits: ConnectionLimits = bounds.DEFAULT
    insecure: bool = False  # plaintext, no identities: local demos only
    ca: CaOptions = CaOptions()
    max_per_identity: int = 256  # push streams of one identity (the replicas of a workload)
    mesh_config: str = ""  # --mesh-config FILE: in force instead of an istio ConfigMap (watched)
    webhook: object | None = None  # --webhook-listen: pymesh.control.kube.webhooks.WebhookOptions
    ship_filter_code: bool = False  # --ship-filter-code: PythonFilter files sent with the config (filter_code)
    # --kubernetes: discovery and custom resources from the API server, the root ConfigMaps, and
    # ServiceAccount tokens proven there by TokenReview
    kubernetes: KubeOptions | None = None


class ControlServer:
    def __init__(self, options: ControlOptions):
        self.options = options
        self.metrics = ControlMetrics()
        self.store = ConfigStore(options.config_dir, options.limits, options.mesh_config)
        self._translation: tuple[object, gateway_api.Translation] | None = None  # see _gateway_api
        self.custom_resources = None  # with --kubernetes, once started: kube.config_source.CustomResources
        self._kube_client = None
        self._root_certs = None  # with --kubernetes and mTLS: kube.root_cert.RootCertPublisher
        self.discovery = None  # with --kubernetes, once started: kube.discovery_source.KubernetesDiscovery
        self.watcher = Watcher(self.store.poll, self._reload, options.debounce, options.max_debounce, options.poll_interval)
        self.ca = None if options.insecure else MeshCA(load_authority(options.ca, options.data_dir), options.ca)
        self.tokens = TokenStore(options.data_dir, time.time)
        self.registry = Registry(options.grace, on_change=self.watcher.notify, on_expire=lambda i: self.hub.forget(i),
                                 mtls=self.ca is not None, entry_grace=options.workload_entry_grace,
                                 on_entry_deleted=lambda: self.metrics.autoreg_deletes.inc())
        last_version, nodes = persist.load(options.data_dir) if options.data_dir else (0, [])
        self._health = persist.load_health(options.data_dir) if nodes else {}
        self.mesh = Mesh(last_version, None if self.ca is None else self.ca.trust_domain)
        self.hub = Hub(self.registry, self.metrics, bundle=None if self.ca is None else lambda: self.ca.bundle_pem,
                       max_per_identity=options.max_per_identity)
        self._nodes = nodes
        self.mesh_api = MeshApi(self.status, lambda: (str(self.mesh.current.version), self.mesh.current.config),
                                self.registry.nodes, Scraper(self.hub.connected_nodes), TraceStore())
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set = set()
        self._watch_task: asyncio.Task | None = None
        self._renewal: asyncio.TimerHandle | None = None
        self.ready = False
        self.listen_address: tuple[str, int] = options.listen
        self.admin_address: tuple[str, int] = options.admin
        self.webhooks = None
        if options.webhook is not None:  # imported only when asked: outside Kubernetes it is off
            from pymesh.control.kube.webhooks import Webhooks
            self.webhooks = Webhooks(options.webhook, self.ca, lambda: self.ready, self.metrics)

    async def start(self) -> None:
        if self._nodes:
            self.registry.restore(self._nodes, self._health)
        else:
            # a restarted server without saved state knows no registered proxies until they
            # reconnect: one that reconnects waits a grace period for the others instead of
            # receiving a view with their endpoints missing (it serves its last config meanwhile)
            self.hub.warmup_until = time.monotonic() + self.options.grace
        if self.options.kubernetes is not None:
            await self._start_kubernetes(self.options.kubernetes)
        self._apply(self.store.reload(), time.monotonic())  # nothing is served yet: in-process
        gate = Gate(self.options.connection_limits, lambda reason: self.metrics.closed.labels(reason=reason).inc())
        server, self._connections = await serve(self.hub.open, *self.options.listen, gate=gate, **self._security())
        self.metrics.watch_connections(self._connections)
        self.metrics.watch_proxies(lambda: len(self.hub.connected_nodes()))
        self.metrics.watch_config(self._sources_config)
        admin = await AdminServer(self.status, self.metrics.render, self.metrics.content_type, lambda: self.ready,
                                  None if self.ca is None else TokenApi(self.tokens, self.ca),
                                  lambda: scrape_targets.http_sd(self.hub.connected_nodes()),
                                  self.mesh_api.routes()).start(*self.options.admin)
        self._servers = [server, admin]
        if self.webhooks is not None:
            self._servers.append(await self.webhooks.start(self._kube_client))
        self.listen_address = server.sockets[0].getsockname()[:2]
        self.admin_address = admin.sockets[0].getsockname()[:2]
        self._watch_task = asyncio.create_task(self.watcher.run())
        self.ready = True
        log.info("serving proxies on %s:%d, admin on %s:%d, config version %d",
                 *self.listen_address, *self.admin_address, self.mesh.current.version)
        if self.ca is None:
            log.warning("INSECURE: --insecure serves every client that connects, in plaintext, with no identity: "
                        "any process that reaches %s:%d can register as any workload and read any namespace's "
                        "configuration; for local demos only", *self.listen_address)
        else:
            log.info("mTLS: trust domain %s, certificates for %.0fs (at most %.0fs)", self.ca.trust_domain,
                     self.options.ca.cert_ttl.total_seconds(), self.options.ca.max_cert_ttl.total_seconds())

    async def _start_kubernetes(self, options: KubeOptions) -> None:
        """The API server's custom resources as a second config source and its discovery, listed
        before the first configuration is served; the root ConfigMaps. Imported here: the client
        library is an optional extra."""
        try:
            from pymesh.control.kube.client import KubeClient
        except ImportError as missing:
            raise ValueError(f"--kubernetes needs the kubernetes extra (pip install 'pymesh[kubernetes]'): "
                             f"{missing}") from None
        from pymesh.control.kube.config_source import CustomResources
        from pymesh.control.kube.discovery_source import KubernetesDiscovery

        try:
            self._kube_client = await KubeClient.connect(options.kubeconfig, options.context)
        except Exception as exc:  # no kubeconfig, a broken one, no in-cluster service account
            raise OSError(f"--kubernetes: cannot reach the API server: {exc}") from exc
        log.info("kubernetes: API server %s", self._kube_client.host)
        self.custom_resources = CustomResources(self._kube_client, self.watcher.notify, self.options.limits,
                                                metrics=self.metrics)
        self.store.add_source(self.custom_resources.source)
        self.discovery = KubernetesDiscovery(self._kube_client, self.watcher.notify, options.namespaces,
                                             metrics=self.metrics)
        await asyncio.gather(self.custom_resources.start(), self.discovery.start())
        if self.ca is not None:
            from pymesh.control.kube.root_cert import RootCertPublisher

            self._root_certs = RootCertPublisher(self._kube_client, lambda: self.ca.bundle_pem, options.root_cert_resync,
                                                 metrics=self.metrics)
            self._root_certs.start()

    def _security(self) -> dict:
        """The listener's TLS context and signing paths (none with --insecure)."""
        if self.ca is None:
            return {}
        signer = Signer(self.ca, self.tokens, lambda outcome: self.metrics.csr.labels(outcome=outcome).inc(),
                        reviewer=self._token_reviewer())

        def sign(request: Request):
            return signer.sign(request.headers.get("authorization"), request.body, request.peer_der, request.peer)

        context = self.ca.server_context()
        self._renew_serving()
        return {"ssl": context, "requests": {wire.SIGN_PATH: ("POST", sign),
                                             wire.BUNDLE_PATH: ("GET", lambda _: signer.bundle())}}

    def _token_reviewer(self):
        """With --kubernetes: ServiceAccount tokens are proven by TokenReviews (else None)."""
        if self._kube_client is None:
            return None
        from pymesh.control.kube.token_review import TokenReviewer

        options = self.options.kubernetes
        return TokenReviewer(self._kube_client.post, options.token_audience, options.token_review_timeout)

    def _renew_serving(self) -> None:
        """The listener's own certificate, renewed at half its lifetime."""
        delay = self.ca.renew_serving()
        self._renewal = asyncio.get_running_loop().call_later(delay, self._renew_serving)

    async def stop(self) -> None:
        """Close the listeners, end every stream with a GOAWAY, save the state."""
        self.ready = False
        if self._renewal is not None:
            self._renewal.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
        self._save()
        self.registry.close()
        if self.custom_resources is not None:
            await self.custom_resources.stop()
        if self.discovery is not None:
            await self.discovery.stop()
        if self._root_certs is not None:
            await self._root_certs.stop()
        if self._kube_client is not None:
            await self._kube_client.close()
        for server in self._servers:
            await server.wait_closed()

    def status(self) -> dict:
        return {
            "version": str(self.mesh.current.version),
            "proxies": [{**p, "refused": self.mesh.refused[p["id"]]} if p["id"] in self.mesh.refused else p
                        for p in self.hub.status()],
            "mtls": self.ca is not None,
            "cluster": "Kubernetes" if self._kube_client is not None else None,  # Istio's default cluster id
            "rejected": [{"file": f, "errors": [str(e) for e in errors]} for f, errors in self.store.rejected],
            "gateway_api": [s.to_json() for s in self._gateway_api()[1].statuses],
            **(self._kubernetes_status() if self.custom_resources is not None else {}),
        }

    def _kubernetes_status(self) -> dict:
        return {"kubernetes_api": self._kube_client.host, "rejected_resources": self.custom_resources.source.resources(),
                "kubernetes": self.custom_resources.status() + (self.discovery.status() if self.discovery else [])}

    def _sources_config(self):
        """The store's configuration, with the cluster's services and workloads under --kubernetes."""
        return self.store.config if self.discovery is None else self.discovery.merged(self.store.config)

    def _gateway_api(self) -> tuple[object, gateway_api.Translation]:
        """The Gateway API translation of the store's configuration (redone when it changes)."""
        config = self._sources_config()
        if self._translation is None or self._translation[0] is not config:
            self._translation = (config, gateway_api.translate(config))
        return self._translation

    async def _reload(self, detected_at: float) -> None:
        """One burst of changes (files, proxies): changed files are loaded off the event loop."""
        self._apply(await self.store.reload_isolated(), detected_at)

    def _apply(self, rejected: list, detected_at: float) -> None:
        """The store's new state -> a new generation, pushed where it matters."""
        if rejected:
            self.metrics.rejections.inc(len(rejected))
        translation = self._gateway_api()[1]
        config = filter_code.outgoing(gateway_api.apply(self._sources_config(), translation),
                                      self.options.ship_filter_code)
        if self.custom_resources is not None:
            self.custom_resources.source.report_gateway_api(translation.statuses)
        generation = self.mesh.update(config, self.registry.entries(config.workload_groups), detected_at)
        if generation is not None:
            log.info("config version %d", generation.version)
            self.hub.publish(generation)
        self._save()

    def _save(self) -> None:
        if self.options.data_dir:
            try:
                persist.save(self.options.data_dir, self.mesh.current.version, self.registry.nodes(),
                             self.registry.healths())
            except OSError as exc:
                log.error("cannot save state in %s: %s", self.options.data_dir, exc)
