"""What the admin (15000), Prometheus (15090) and health (15021) ports answer."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import urllib.parse
from typing import Callable

from pymesh.proxy import admin, app_probers, clusters_page
from pymesh.proxy.certs import CERT_CHAIN, ROOT_CERT
from pymesh.proxy.certs_page import certs_dump, mtls_readiness
from pymesh.routing.mesh_view import encode_view
from pymesh.security.ca import utc_now


class AdminEndpoints:
    def __init__(self, options, telemetry, snapshot: Callable, ready: Callable[[], bool], quit: Callable,
                 cluster_states: Callable[[], dict] | None = None,
                 config_status: Callable[[], dict] | None = None,
                 connections: Callable[[], dict] | None = None, certs=None, cert_source=None) -> None:
        self.options = options
        self.telemetry = telemetry
        self.snapshot = snapshot
        self.ready = ready
        self.quit = quit
        self.cluster_states = cluster_states
        self.config_status = config_status
        self.connections = connections  # open upstream connections by (cluster, host), for /clusters
        self.certs = certs  # the workload's CertificateStore, for /certs and readiness
        self.cert_source = cert_source  # its CertDirSource (--cert-dir), if the files feed it
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        admin_address = self.options.admin_address
        for address, port, handler, guard in (
            (admin_address, self.options.admin_port, self.admin, True),  # it can stop the proxy and dump config
            (self.options.stats_address or admin_address, self.options.stats_port, self.prometheus, False),
            (self.options.health_address or admin_address, self.options.health_port, self.health, False),
        ):
            if port:
                self.servers.append(await admin.serve(address, port, handler, browser_guard=guard))

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def _is_ready(self) -> tuple[int, bytes, bytes]:
        if not self.ready():
            return admin.text(503, "NOT READY\n")
        problem = self._mtls_problem()
        return admin.text(503, f"NOT READY: {problem}\n") if problem else admin.text(200, "LIVE\n")

    def _mtls_problem(self) -> str | None:
        snapshot = self.snapshot()
        if snapshot is None:
            return None
        cert = self.certs.current if self.certs is not None else None
        why = self.cert_source.error if self.cert_source is not None else None
        return mtls_readiness(snapshot.peer_authn, cert, utc_now(), why)

    def _certs(self) -> tuple[int, bytes, bytes]:
        cert = self.certs.current if self.certs is not None else None
        paths = {}
        if self.cert_source is not None:
            directory = self.cert_source.directory
            paths = {"chain_path": os.path.join(directory, CERT_CHAIN), "roots_path": os.path.join(directory, ROOT_CERT)}
        return admin.as_json(certs_dump(cert, utc_now(), **paths))

    def health(self, method: str, path: str):
        route = path.split("?")[0]
        if route == "/healthz/ready":
            return self._is_ready()
        prober = self.options.app_probers.get(route)  # the app's own probe, rewritten by kube-inject
        if prober is not None:
            return app_probers.answer(prober, self.options.identity.ip or "127.0.0.1")
        return admin.text(404, "not found\n")

    def prometheus(self, method: str, path: str):
        if path.split("?")[0] in ("/stats/prometheus", "/metrics"):
            return 200, b"text/plain; version=0.0.4; charset=utf-8", self.telemetry.render_prometheus()
        return admin.text(404, "not found\n")

    def admin(self, method: str, path: str):
        route = path.split("?")[0]
        if route == "/ready":
            return self._is_ready()
        if route == "/config_dump":
            include_secrets = _flag(path, "include_secrets")
            if include_secrets and not _loopback(self.options.admin_address):
                return admin.text(403, "include_secrets is answered only when the admin port listens on a "
                                       "loopback address\n")
            snapshot = self.snapshot()
            dump = snapshot.dump(include_secrets) if snapshot is not None else {}
            if self.config_status is not None:  # the last reload: an edit that did not apply, and why
                dump["config_status"] = self.config_status()
            return admin.as_json(dump)
        if route == "/clusters":
            return admin.text(200, self._clusters())
        if route == "/mesh_config":  # what `pymesh explain --admin` compiles (secrets redacted)
            snapshot = self.snapshot()
            return admin.as_json(encode_view(snapshot)) if snapshot is not None else admin.text(503, "no configuration yet\n")
        if route == "/access_log":  # the recent records of one request id (`pymesh explain --request-id`)
            return self._access_log(path)
        if route == "/certs":
            return self._certs()
        if route == "/stats":
            return 200, b"text/plain; charset=utf-8", self.telemetry.render_stats()
        if route == "/stats/prometheus":
            return self.prometheus(method, path)
        if route == "/quitquitquit":
            if method != "POST":
                return admin.text(405, "use POST\n")
            self.quit()
            return admin.text(200, "OK\n")
        return admin.text(404, "paths: /ready /config_dump /clusters /mesh_config /access_log /certs /stats /stats/prometheus /quitquitquit\n")

    def _access_log(self, path: str):
        log = getattr(self.telemetry, "access_log", None)
        request_id = urllib.parse.parse_qs(path.partition("?")[2]).get("request_id", [""])[0]
        if not request_id:
            return admin.text(400, "give ?request_id=ID\n")
        if log is None:
            return admin.as_json({"kept": False, "records": []})
        return admin.as_json({"kept": True, "records": log.find(request_id)})

    def _clusters(self) -> str:
        snapshot = self.snapshot()
        if snapshot is None:
            return ""
        states = self.cluster_states() if self.cluster_states else {}
        return clusters_page.render(snapshot.clusters, states, self.connections() if self.connections else {})


def _flag(path: str, name: str) -> bool:
    """Whether the query has `name=true` (or `name=1`, or a bare `name`)."""
    values = urllib.parse.parse_qs(path.partition("?")[2], keep_blank_values=True).get(name, [])
    return any(value in ("", "true", "1") for value in values)


def _loopback(address: str) -> bool:
    """Whether the admin port listens only where this host's own processes reach it."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
