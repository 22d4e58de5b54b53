"""One proxy worker's lifecycle: load and compile the configuration, open listeners, reload on
SIGHUP or a changed file, drain on SIGTERM.

A reload reads, checks and compiles the whole new configuration in a child process, within the
input limits and a time limit (`pymesh.api.limits`), so a large or hostile file never stalls the
event loop that serves traffic; only the validated configuration comes back, and it is compiled
again here to be installed. A configuration with errors, over a limit, too slow or crashing the
child is logged with every error, counted and shown in /config_dump, and the old one stays in
force; the file watcher carries on. Listeners are opened and closed to match the new snapshot;
connections already accepted carry on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass, field

from pymesh.api import model, wire
from pymesh.api.limits import DEFAULT as DEFAULT_LIMITS, Limits
from pymesh.api.errors import ConfigInvalid
from pymesh.api.load import load_paths
from pymesh.api.meshconfig import with_mesh_config
from pymesh.api.offload import OffloadFailed, run_in_child
from pymesh.http import h1
from pymesh.proxy.capture import CaptureSettings, Sniffer
from pymesh.proxy.control_client import ConfigRejected, SnapshotStore
from pymesh.proxy import filter_code, random_source
from pymesh.proxy.allocator import raise_mmap_threshold
from pymesh.proxy.http1 import DownstreamH1
from pymesh.proxy.certs import CertDirSource, CertificateStore
from pymesh.proxy.credentials import CredentialResolver
from pymesh.proxy.gateway_tls import GatewayTls
from pymesh.proxy.upstream_tls import TlsEnvironment
from pymesh.proxy.inbound_tls import DISABLE, InboundTls, MtlsGate, secured_handler
from pymesh.proxy.reloads import FAILURE, REJECTED, SUCCESS, ReloadRecord
from pymesh.proxy.downstream_limits import DownstreamLimits
from pymesh.proxy.runtime import Runtime
from pymesh.proxy.tcp import TcpProxy
from pymesh.proxy.tls_passthrough import SniRouter
from pymesh.proxy.telemetry import Telemetry
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.filter_loading import FilterLoadError
from pymesh.routing.snapshot import Listener, ProxyIdentity, Snapshot
from pymesh.security.jointoken import JoinToken
from pymesh.security.sa_token import ServiceAccountToken

log = logging.getLogger("pymesh.proxy")

WATCH_INTERVAL = 1.0
IP_TRANSPARENT = 19  # linux/in.h


@dataclass
class ProxyOptions:
    config_paths: list[str]
    identity: ProxyIdentity = field(default_factory=ProxyIdentity)
    admin_address: str = "127.0.0.1"
    admin_port: int = 15000
    stats_port: int = 15090
    health_port: int = 15021
    health_address: str = ""  # "": the admin address; a pod's kubelet probes from outside (0.0.0.0)
    stats_address: str = ""  # "": the admin address
    app_probers: dict = field(default_factory=dict)  # /app-health/... path -> pymesh.proxy.app_probers.AppProber
    access_log: str = "/dev/stdout"  # a path, or "off"
    mesh_config: str = ""  # --mesh-config: Istio's MeshConfig file, in force instead of an istio ConfigMap
    drain_timeout: float = 5.0
    concurrency: int | None = 1  # worker processes; None: the ProxyConfig's (pymesh.proxy.main.resolve_concurrency)
    limits: h1.Limits = field(default_factory=h1.Limits)
    downstream: DownstreamLimits = field(default_factory=DownstreamLimits)  # timeouts, connections
    watch: bool = True
    filter_budget: float = 0.050  # seconds a PythonFilter hook may hold the event loop before it is reported
    capture: CaptureSettings | None = None  # iptables capture listeners (15001/15006), if on
    control: ControlOptions | None = None  # configuration from a control server, not files
    config_limits: Limits = DEFAULT_LIMITS  # input limits and the reload time limit
    random_seed: int | None = None  # a fixed random sequence (tests); None: a fresh one per worker
    cert_dir: str | None = None  # Istio's file-mounted certificates (cert-chain.pem, key.pem, root-cert.pem)
    credentials_dir: str | None = None  # DestinationRule tls.credentialName folders (pymesh.proxy.credentials)


@dataclass
class ControlOptions:
    host: str
    port: int
    node: wire.Node
    data_dir: str | None = None  # where the last good snapshot is kept
    token: JoinToken | ServiceAccountToken | None = None  # with one: mTLS to the server, a certificate signed by it
    ca_root: bytes | None = None  # PEM root to verify the server by (else the token's pin)
    renew_fraction: float = 0.5
    cert_ttl: float | None = None  # seconds to ask for (the server's --cert-ttl when None)
    accept_filter_code: bool = False  # --accept-filter-code: run PythonFilter code the server ships


class ConfigError(Exception):
    """The configuration cannot be loaded; carries every error, one per line."""


def load_config(options: ProxyOptions) -> tuple[model.MeshConfig, str | None]:
    """The configuration to serve now, and its version if it came from the control server.

    Files in static mode. With a control server: the last snapshot it sent (persisted), or an
    empty configuration until one arrives.
    """
    if options.control is not None:
        saved = SnapshotStore(options.control.data_dir).load()
        if saved is None:
            return model.MeshConfig(), None
        refused = filter_code.refusal(saved[0], options.control.accept_filter_code)  # saved by an earlier run
        if refused:
            raise ConfigError(f"{options.control.data_dir}: the saved snapshot: {refused}")
        return saved
    result = load_paths(options.config_paths, options.config_limits)
    if result.errors:
        raise ConfigError("\n".join(str(error) for error in result.errors))
    for warning in result.warnings:
        log.warning("%s", warning)
    try:
        return with_mesh_config(result.config, options.mesh_config), None
    except ConfigInvalid as invalid:
        raise ConfigError("\n".join(str(error) for error in invalid.errors)) from invalid
    except OSError as error:
        raise ConfigError(f"{options.mesh_config}: cannot read: {error.strerror or error}") from error


def checked_config(options: ProxyOptions) -> tuple[model.MeshConfig, str | None] | ConfigError:
    """In the reload's child process: the configuration, loaded and compiled once to check it,
    or the ConfigError that rejects it (returned, not raised: a rejection is an answer)."""
    try:
        config, saved_version = load_config(options)
        compile_snapshot(config, options.identity, saved_version or "check")
    except ConfigError as errors:
        return errors
    except (ValueError, KeyError, TypeError) as error:
        return ConfigError(f"cannot compile configuration: {error}")
    return config, saved_version


async def load_config_off_loop(options: ProxyOptions) -> tuple[model.MeshConfig, str | None]:
    """`load_config` in a child process under the time limit: raises ConfigError (rejected) or
    OffloadFailed (timed out, crashed). With a control server the snapshot on disk is one this
    proxy validated before saving it, so workers load it in-process: sooner, as the supervisor
    ACKs a push once it has signalled them."""
    if options.control is not None:
        return load_config(options)
    checked = await run_in_child(checked_config, options, timeout=options.config_limits.load_timeout)
    if isinstance(checked, ConfigError):
        raise checked
    return checked


def load_snapshot(options: ProxyOptions, version: str) -> Snapshot:
    config, saved_version = load_config(options)
    try:
        return compile_snapshot(config, options.identity, saved_version or version)
    except FilterLoadError as error:  # at start: refused like an invalid resource, not a traceback
        raise ConfigError(str(error)) from error


def config_fingerprint(paths: list[str]) -> tuple:
    """Modification times and sizes of every YAML file under the paths, and of the Python files
    under directories (a PythonFilter's file module is read from beside its YAML, so an edited
    filter reloads like an edited resource): cheap change detection."""
    entries = []
    for path in paths:
        if os.path.isdir(path):
            for root, _, files in os.walk(path):
                entries.extend(os.path.join(root, name) for name in files if name.endswith((".yaml", ".yml", ".py")))
        else:
            entries.append(path)
    fingerprint = []
    for entry in sorted(entries):
        try:
            stat = os.stat(entry)
        except FileNotFoundError:
            continue
        fingerprint.append((entry, stat.st_mtime_ns, stat.st_size))
    return tuple(fingerprint)


async def reload_from_disk(options: ProxyOptions, version: str, apply, reloads: ReloadRecord | None) -> bool:
    """Load the configuration off the loop and `await apply(config, version)` it. Never raises:
    the watcher and the SIGHUP handler call it and must carry on; every outcome is logged and,
    with `reloads`, recorded."""
    try:
        config, saved_version = await load_config_off_loop(options)
        version = saved_version or version
        await apply(config, version)
    except (ConfigError, ConfigRejected) as errors:
        log.error("configuration rejected, keeping the previous one:\n%s", errors)
        outcome = (REJECTED, str(errors).splitlines())
    except OffloadFailed as error:
        log.error("configuration rejected, keeping the previous one: %s", error)
        outcome = (FAILURE, [str(error)])
    except Exception as error:  # a bug must not stop reloads, nor traffic
        log.exception("configuration reload failed, keeping the previous one")
        outcome = (FAILURE, [f"{type(error).__name__}: {error}"])
    else:
        outcome = (SUCCESS, [])
    if reloads is not None:
        reloads.record(outcome[0], version, outcome[1])
    return outcome[0] == SUCCESS


class ProxyWorker:
    """Listeners and runtime of one worker process."""

    def __init__(self, options: ProxyOptions, telemetry: Telemetry, reuse_port: bool = False,
                 reloads: ReloadRecord | None = None, certs: CertificateStore | None = None) -> None:
        self.options = options
        self.reloads = reloads  # None: another process (the supervisor) reports reloads
        self.telemetry = telemetry
        self.reuse_port = reuse_port
        self.loop = asyncio.get_running_loop()
        random_source.seed(options.random_seed)  # per worker: forked workers must not share one
        raise_mmap_threshold()  # TLS reads from the heap, not mmap (pymesh.proxy.allocator)
        self.runtime = Runtime(self.loop, telemetry, options.limits, options.downstream)
        self.runtime.filter_budget = options.filter_budget
        self.certs = certs if certs is not None else CertificateStore()
        self.cert_source = CertDirSource(options.cert_dir, self.certs) if options.cert_dir else None
        if self.cert_source is not None:
            self.cert_source.load()  # before the first connection: STRICT ports need it at once
        self.runtime.tls_env = TlsEnvironment(self.certs, CredentialResolver(options.credentials_dir))
        self.runtime.inbound_tls = InboundTls(self.certs, self.runtime.listener_stats)
        self.runtime.gateway_tls = GatewayTls(self.runtime, self.runtime.tls_env.credentials, self.certs)
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.version = 0
        self.fingerprint = config_fingerprint(options.config_paths)
        self._reloading = asyncio.Lock()  # one reload at a time, applied in the order started
        self.stopped = asyncio.Event()
        self.became_ready = asyncio.Event()
        self._ready = False

    @property
    def ready(self) -> bool:
        """Serving a real configuration and not draining (what /ready reports)."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        if value:
            self.became_ready.set()

    async def start(self, snapshot: Snapshot, ready: bool = True) -> None:
        if self.cert_source is not None:
            self.cert_source.start()  # new files -> new certificate for new connections
        self.runtime.gateway_tls.start()  # changed credential files -> new contexts
        self.runtime.install(snapshot)
        await self._sync_listeners(snapshot)
        self.ready = ready

    async def apply_config(self, config: model.MeshConfig, version: str) -> None:
        """Compile and install a configuration as one step, or raise ConfigRejected and change
        nothing (a listener that cannot be bound rejects the whole configuration)."""
        try:
            snapshot = compile_snapshot(config, self.options.identity, version)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigRejected(f"cannot compile configuration: {error}") from error
        try:
            await self._sync_listeners(snapshot, dry_run=True)
        except OSError as error:
            raise ConfigRejected(f"cannot open a listener: {error}") from error
        self.runtime.install(snapshot)
        await self._sync_listeners(snapshot)
        self.ready = True
        log.info("configuration version %s applied", version)

    # configuration ------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Apply the configuration on disk; keep the current one if anything goes wrong."""
        async with self._reloading:
            self.fingerprint = config_fingerprint(self.options.config_paths)
            self.version += 1
            return await reload_from_disk(self.options, str(self.version), self.apply_config, self.reloads)

    async def watch(self) -> None:
        """Reload when a file under the config paths changes (polling: no extra dependency).
        Whatever one round does, the next one runs."""
        if self.options.control is not None:
            return  # the control server pushes changes
        while not self.stopped.is_set():
            await asyncio.sleep(WATCH_INTERVAL)
            if self.runtime.draining:
                return
            try:
                if config_fingerprint(self.options.config_paths) != self.fingerprint:
                    await self.reload()
            except Exception:
                log.exception("watching the configuration files failed; still watching")

    # listeners ------------------------------------------------------------------------------------

    async def _sync_listeners(self, snapshot: Snapshot, dry_run: bool = False) -> None:
        """Open the snapshot's new listeners and close the ones it no longer has.

        With `dry_run`, only check that every new listener's address can be bound.
        """
        wanted = {listener.name: listener for listener in snapshot.listeners}
        if self.options.capture is not None:
            wanted.update((listener.name, listener) for listener in self.options.capture.listeners())
        if dry_run:
            for name, listener in wanted.items():
                if name not in self.servers:
                    self._bind(listener).close()
            return
        for name in list(self.servers):
            if name not in wanted:
                self.servers.pop(name).close()
        for name, listener in wanted.items():
            if name not in self.servers:
                sock = self._bind(listener)
                self.servers[name] = await self.loop.create_server(
                    lambda listener=listener: self._protocol_for(listener), sock=sock, backlog=1024
                )

    def _bind(self, listener: Listener) -> socket.socket:
        family = socket.AF_INET6 if ":" in listener.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if listener.protocol == "CAPTURE" and self.options.capture.tproxy:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)  # accept for addresses not ours
        try:
            sock.bind((listener.bind, listener.port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def _protocol_for(self, listener: Listener):
        if listener.protocol == "CAPTURE":
            return Sniffer(self.runtime, self.options.capture, listener.direction)
        current = self.runtime.current(listener)
        if current.direction == "inbound" and not current.tls_servers:  # a gateway's TLS port terminates itself
            mode = self.runtime.snapshot.peer_authn.mode_for(current.port)
            if mode != DISABLE:
                return MtlsGate(self.runtime, current, mode, lambda silent: self._plaintext(current),
                                lambda facts: secured_handler(self.runtime, current, facts))
        return self._plaintext(current)

    def _plaintext(self, listener: Listener):
        fallback = lambda: TcpProxy(self.runtime, listener) if listener.tcp_route else None  # noqa: E731
        if listener.tls_servers:
            return self.runtime.gateway_tls.router(listener, fallback)
        if listener.sni_routes is not None:
            return SniRouter(self.runtime, listener, fallback=fallback)
        if listener.route_table is None:
            return TcpProxy(self.runtime, listener)
        return DownstreamH1(self.runtime, listener)

    # shutdown -------------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop accepting, finish what was accepted, close idle connections, then stop.

        Connections still waiting in a listener's accept queue were accepted by the kernel on
        our behalf: they are accepted and served rather than reset.
        """
        if self.runtime.draining:
            return
        self.ready = False
        backlogs = []
        for name, server in self.servers.items():
            for sock in server.sockets:
                backlogs.append((self._listener_named(name), socket.socket(fileno=os.dup(sock.fileno()))))
            server.close()
        self.servers.clear()
        for listener, sock in backlogs:
            await self._accept_backlog(listener, sock)
        self.runtime.start_draining()
        try:
            await asyncio.wait_for(self.runtime.all_closed.wait(), self.options.drain_timeout)
        except asyncio.TimeoutError:
            log.warning("drain timeout: closing %d connections", len(self.runtime.connections))
        for connection in list(self.runtime.connections):
            connection.close()
        await self.runtime.tracing.drain()  # the last requests' spans
        self.runtime.close()
        if self.cert_source is not None:
            self.cert_source.close()
        self.runtime.gateway_tls.close()
        self.telemetry.flush()
        self.stopped.set()

    def _listener_named(self, name: str) -> Listener:
        if self.options.capture is not None:
            for listener in self.options.capture.listeners():
                if listener.name == name:
                    return listener
        return self.runtime.listeners[name]

    async def _accept_backlog(self, listener: Listener, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                await self.loop.connect_accepted_socket(lambda: self._protocol_for(listener), conn)
        finally:
            sock.close()

    def install_signal_handlers(self) -> None:
        self.loop.add_signal_handler(signal.SIGTERM, lambda: self.loop.create_task(self.drain()))
        self.loop.add_signal_handler(signal.SIGINT, lambda: self.loop.create_task(self.drain()))
        self.loop.add_signal_handler(signal.SIGHUP, lambda: self.loop.create_task(self.reload()))
