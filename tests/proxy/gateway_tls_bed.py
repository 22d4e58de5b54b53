"""A test bed for gateway TLS termination: certificates made the way Istio's "Secure Gateways"
task makes them (the openssl commands of its example_certs1/2), credential folders laid out as a
mounted Kubernetes TLS secret, real `openssl s_client` and curl as clients, and a proxy worker
run in this process on a snapshot whose listener carries hand-made TlsServerChains (so the proxy
side is tested on its own, whatever compiles Gateways into snapshots)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import uvloop

from pymesh.api import model
from pymesh.api.load import load_text
from pymesh.proxy.server import ProxyOptions, ProxyWorker
from pymesh.proxy.telemetry import Telemetry
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.snapshot import ProxyIdentity, ServerTls, Snapshot, TlsServerChain
from pymesh.telemetry.metrics import MetricsContext
from proxy_harness import LOCALHOST, dump_yaml

OPENSSL_TIMEOUT = 10.0


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=OPENSSL_TIMEOUT)


def istio_example_certs(directory: Path, hosts: tuple[str, ...] = ("httpbin.example.com",),
                        clients: tuple[str, ...] = ("client.example.com",)) -> Path:
    """The task's example_certs folder: a root `example.com.crt/.key` (RSA 2048, O=example Inc.)
    and, for each name, `<name>.crt/.key` signed by it (CN=<name>, no SAN: as the task's)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-sha256", "-nodes", "-days", "365", "-newkey", "rsa:2048", "-subj",
             "/O=example Inc./CN=example.com", "-keyout", "example.com.key", "-out", "example.com.crt", cwd=directory)
    for serial, name in enumerate((*hosts, *clients)):
        _openssl("req", "-out", f"{name}.csr", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-subj", f"/CN={name}/O={name.split('.')[0]} organization", cwd=directory)
        _openssl("x509", "-req", "-sha256", "-days", "365", "-CA", "example.com.crt", "-CAkey", "example.com.key",
                 "-set_serial", str(serial), "-in", f"{name}.csr", "-out", f"{name}.crt", cwd=directory)
    return directory


def write_credential(credentials_dir: Path, name: str, cert: Path | None = None, key: Path | None = None,
                     ca: Path | None = None) -> Path:
    """`kubectl create secret tls|generic <name>` as the folder a Secret mount makes: tls.crt,
    tls.key (0600), ca.crt; each file replaced whole (rename), as a kubelet update is atomic."""
    folder = credentials_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in ((cert, "tls.crt"), (key, "tls.key"), (ca, "ca.crt")):
        if source is None:
            continue
        temporary = folder / f".{target}.new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Path(source).read_bytes())
        os.replace(temporary, folder / target)
    return folder


def remove_credential(credentials_dir: Path, name: str) -> None:
    shutil.rmtree(credentials_dir / name, ignore_errors=True)


def tls_settings(mode: str = "SIMPLE", **fields) -> model.ServerTLSSettings:
    return model.ServerTLSSettings(mode=mode, **fields)


def chain(names: tuple[str, ...], settings: model.ServerTLSSettings, route_table=None, tcp_route=None,
          protocol: str = "HTTPS") -> TlsServerChain:
    return TlsServerChain(names, ServerTls(settings.mode, settings, "istio-system"), protocol,
                          route_table=route_table, tcp_route=tcp_route)


def compiled(resources: list[dict]) -> Snapshot:
    result = load_text(dump_yaml(resources))
    assert not result.errors, result.errors
    return compile_snapshot(result.config, ProxyIdentity(), "1")


def with_tls_servers(snapshot: Snapshot, port: int, chains: tuple[TlsServerChain, ...], sni_routes=None,
                     direction: str = "inbound") -> Snapshot:
    """The snapshot with its listener on `port` made a gateway TLS port serving `chains`
    (inbound: the direction whose filters write x-forwarded-proto, which shows the scheme)."""
    listeners = tuple(replace(l, protocol="HTTPS", tls_servers=chains, sni_routes=sni_routes, route_table=None,
                              tcp_route=None, direction=direction) if l.port == port else l
                      for l in snapshot.listeners)
    return replace(snapshot, listeners=listeners)


class InProcessGateway:
    """A ProxyWorker on its own uvloop thread serving `snapshot`; `stats(name)` reads a
    listener's counters there. Always stop() it (a context manager does)."""

    START_TIMEOUT = 10.0

    def __init__(self, snapshot: Snapshot, credentials_dir: Path | None, cert_dir: Path | None = None) -> None:
        self.options = ProxyOptions(config_paths=[], access_log="off", watch=False,
                                    credentials_dir=str(credentials_dir) if credentials_dir else None,
                                    cert_dir=str(cert_dir) if cert_dir else None)
        self.snapshot = snapshot
        self.loop = uvloop.new_event_loop()
        self.worker: ProxyWorker | None = None
        self.failed: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-tls-bed", daemon=True)

    def __enter__(self) -> "InProcessGateway":
        self._thread.start()
        if not self._ready.wait(self.START_TIMEOUT) or self.failed is not None:
            self.stop()
            raise RuntimeError(f"the in-process gateway did not start: {self.failed}")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        try:
            self.worker = ProxyWorker(self.options, Telemetry(MetricsContext(), None))
            await self.worker.start(self.snapshot)
        except BaseException as error:  # reported by __enter__
            self.failed = error
            self._ready.set()
            return
        self._ready.set()
        await self.worker.stopped.wait()

    def call(self, function, timeout: float = 5.0):
        """Run `function()` on the worker's loop and return its result."""
        async def run():
            return function()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stats(self, listener_name: str) -> dict[str, int]:
        return self.call(lambda: dict(self.worker.runtime.listener_stats(type("L", (), {"name": listener_name}))))

    def stop(self) -> None:
        if self._thread.is_alive() and self.worker is not None:
            asyncio.run_coroutine_threadsafe(self.worker.drain(), self.loop)
        self._thread.join(timeout=15)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


def s_client(port: int, *args: str, servername: str | None = None, stdin: bytes = b"", timeout: float = 10.0
             ) -> subprocess.CompletedProcess:
    """`openssl s_client` to the gateway; its output (stdout + stderr) in `.stdout`."""
    command = ["openssl", "s_client", "-connect", f"{LOCALHOST}:{port}", "-brief"]
    if servername is not None:
        command += ["-servername", servername]
    else:
        command += ["-noservername"]
    return subprocess.run(command + list(args), input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)


def curl_https(port: int, host: str, path: str, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """curl https://<host>:<port><path> with --resolve to 127.0.0.1 (SNI and Host are `host`,
    as the task's `curl -HHost:... --resolve`); prints the status and HTTP version last."""
    command = ["curl", "-sS", "--max-time", str(timeout), "--resolve", f"{host}:{port}:{LOCALHOST}",
               "-w", "\n%{http_code} %{http_version}", *args, f"https://{host}:{port}{path}"]
    return subprocess.run(command, capture_output=True, timeout=timeout + 5, text=True)


def tls_echo(port: int, servername: str, cafile: Path, payload: bytes = b"ping") -> bytes:
    """Send `payload` over TLS (verifying the server against `cafile`) and read as many bytes back."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            tls.sendall(payload)
            received = b""
            while len(received) < len(payload):
                data = tls.recv(len(payload) - len(received))
                if not data:
                    break
                received += data
            return received
