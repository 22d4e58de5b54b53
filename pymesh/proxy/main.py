"""Process model of the proxy: one process, or a supervisor with N workers (`--concurrency`, or
a ProxyConfig's: pymesh.proxy.concurrency).

With one worker everything runs in one uvloop process. With N, the supervisor forks the workers
before it creates any event loop; each worker opens the same listeners with SO_REUSEPORT (as
Envoy's workers share a port) and the kernel spreads connections over them. The supervisor serves
the admin, metrics and health endpoints from the workers' shared telemetry, watches the files,
validates a changed configuration once and then tells the workers to reload (SIGHUP), and on
SIGTERM drains them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile

import uvloop

from pymesh.proxy import downstream_limits, filter_code
from pymesh.proxy.certs import CertDirSource, CertificateStore
from pymesh.proxy.concurrency import PRIVATE_DATA_DIR, resolve_concurrency, watch_concurrency
from pymesh.proxy.control_client import ConfigRejected, ControlClient, SnapshotStore
from pymesh.proxy.endpoints import AdminEndpoints
from pymesh.proxy.health_probe import HealthProbe, group_probe
from pymesh.proxy.reloads import ReloadRecord
from pymesh.proxy.server import (ConfigError, ProxyOptions, ProxyWorker, config_fingerprint, load_snapshot,
                                 reload_from_disk)
from pymesh.proxy.telemetry import Telemetry
from pymesh.proxy.workload_identity import WorkloadIdentity
from pymesh.routing.compile import compile_snapshot

log = logging.getLogger("pymesh.proxy")


def main(options: ProxyOptions) -> int:
    options = dataclasses.replace(options, downstream=downstream_limits.resolve(options.downstream))
    private_dir = os.environ.pop(PRIVATE_DATA_DIR, None)  # made for this proxy when it re-executed itself
    try:
        try:
            snapshot = load_snapshot(options, "1")
        except ConfigError as errors:
            print(f"pymesh proxy: configuration has errors:\n{errors}", file=sys.stderr)
            return 1
        # without --concurrency, a control-server proxy that has no snapshot yet learns it from the first
        restart_on_first = options.concurrency is None and not has_config(options)
        workers, source = resolve_concurrency(options.concurrency, snapshot.config, options.identity)
        if source:
            log.info("%d worker(s), from ProxyConfig %s", workers, source)
        options = dataclasses.replace(options, concurrency=workers)
        if options.concurrency == 1:
            return uvloop.run(_single(options, snapshot, restart_on_first))
        return _supervise(options)
    finally:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)


async def _single(options: ProxyOptions, snapshot, restart_on_first: bool = False) -> int:
    telemetry = Telemetry.create(options, workers=1)
    reloads = ReloadRecord(telemetry.metrics, snapshot.version)
    certs = CertificateStore()  # the workload certificate: the data plane's, filled by the control server's CA
    identity = workload_identity(options, certs)
    worker = ProxyWorker(options, telemetry, reloads=reloads, certs=certs)
    try:
        await worker.start(snapshot, ready=has_config(options))
    except OSError as error:
        print(f"pymesh proxy: cannot open listener: {error}", file=sys.stderr)
        return 1
    endpoints = AdminEndpoints(options, telemetry, lambda: worker.runtime.snapshot,
                               ready_with(identity, lambda: worker.ready),
                               quit=lambda: asyncio.get_running_loop().create_task(worker.drain()),
                               cluster_states=lambda: worker.runtime.cluster_states, config_status=reloads.dump,
                               connections=lambda: worker.runtime.pools.open_by_host(),
                               certs=worker.certs, cert_source=worker.cert_source)
    await endpoints.start()
    worker.install_signal_handlers()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(telemetry.flush_periodically())]
    if identity is not None:
        tasks.append(loop.create_task(identity.run()))
    if options.control is not None:
        apply = watch_concurrency(worker.apply_config, options.identity, 1, options.control.data_dir, restart_on_first)
        tasks.append(loop.create_task(control_client(options, apply, identity).run()))
    elif options.watch:
        tasks.append(loop.create_task(worker.watch()))
    log.info("ready: %s", ", ".join(sorted(worker.servers)) or "no listeners")
    await worker.stopped.wait()
    for task in tasks:
        task.cancel()
    endpoints.close()
    telemetry.close()
    return 0


def has_config(options: ProxyOptions) -> bool:
    """Static files always are a configuration; a control-server proxy has one once a snapshot
    arrived, now or before a restart (persisted)."""
    return options.control is None or SnapshotStore(options.control.data_dir).load() is not None


def control_client(options: ProxyOptions, apply, identity: WorkloadIdentity | None = None) -> ControlClient:
    """The control server's client; with --workload-group, it also runs the group's probe from
    each applied (or restored) configuration and reports the application's health. Shipped
    filter code is refused (NACKed) unless --accept-filter-code (pymesh.proxy.filter_code)."""
    control = options.control
    node = control.node
    apply = _admitting_filter_code(apply, control.accept_filter_code)
    if not node.workload_group:
        client = ControlClient(control.host, control.port, node, apply, SnapshotStore(control.data_dir), identity)
        client.restore()
        return client
    probe = HealthProbe(lambda healthy, message: client.report_health(healthy, message),
                        node.addresses[0] if node.addresses else "127.0.0.1")

    async def apply_and_probe(config, version: str) -> None:
        await apply(config, version)
        probe.update(group_probe(config))

    client = ControlClient(control.host, control.port, node, apply_and_probe, SnapshotStore(control.data_dir),
                           identity)
    restored = client.restore()
    if restored is not None:
        probe.update(group_probe(restored[0]))
    return client


def _admitting_filter_code(apply, accept_code: bool):
    async def admitted(config, version: str) -> None:
        refused = filter_code.refusal(config, accept_code)
        if refused:
            raise ConfigRejected(refused)
        await apply(config, version)

    return admitted


def workload_identity(options: ProxyOptions, store: CertificateStore) -> WorkloadIdentity | None:
    """With a join token: the certificate from the control server, kept renewed in `store`."""
    control = options.control
    if control is None or control.token is None:
        return None
    directory = identity_dir(control.data_dir) if control.data_dir else None
    return WorkloadIdentity(control.host, control.port, control.token, store, control.ca_root,
                            control.renew_fraction, control.cert_ttl, directory=directory)


def identity_dir(data_dir: str) -> str:
    """Where a proxy keeps its control-server certificate (Istio's file layout, as --cert-dir)."""
    return os.path.join(data_dir, "identity")


def ready_with(identity: WorkloadIdentity | None, ready):
    """Readiness that also needs a certificate that is valid and not about to run out."""
    if identity is None:
        return ready
    return lambda: ready() and identity.problem() is None


# --- N workers ----------------------------------------------------------------------------------


def _supervise(options: ProxyOptions) -> int:
    private_dir = None
    if options.control is not None and options.control.data_dir is None:
        # Workers load each pushed snapshot from the data directory (on SIGHUP): without one
        # given, a private one that lives as long as this proxy.
        private_dir = tempfile.mkdtemp(prefix="pymesh-proxy-")
        options.control = dataclasses.replace(options.control, data_dir=private_dir)
    if options.control is not None and options.control.token is not None:
        # the supervisor gets the certificate and keeps it there; the workers read it as --cert-dir
        options.cert_dir = identity_dir(options.control.data_dir)
    try:
        telemetry = Telemetry.create(options, workers=options.concurrency)
        workers: dict[int, int] = {}  # pid -> read end of its readiness pipe
        for _ in range(options.concurrency):
            pid, ready_fd = _fork_worker(options, telemetry)
            workers[pid] = ready_fd
        return uvloop.run(_supervisor_loop(options, telemetry, workers))
    finally:  # the supervisor only: workers leave through os._exit
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)


def _check_new_listeners(current, new) -> None:
    """Bind, as the workers will (SO_REUSEPORT), every listener `new` adds to `current`, so a
    port another process holds rejects the snapshot before it is ACKed or persisted."""
    have = {listener.name for listener in current.listeners}
    for listener in new.listeners:
        if listener.name in have:
            continue
        family = socket.AF_INET6 if ":" in listener.bind else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((listener.bind, listener.port))


def _fork_worker(options: ProxyOptions, telemetry: Telemetry) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, read_fd
    os.close(read_fd)
    code = 1
    try:
        code = uvloop.run(_worker(options, telemetry, write_fd))
    except BaseException:
        logging.getLogger("pymesh.proxy").exception("worker failed")
    finally:
        os._exit(code)


async def _worker(options: ProxyOptions, telemetry: Telemetry, ready_fd: int) -> int:
    worker = ProxyWorker(options, telemetry, reuse_port=True)
    await worker.start(load_snapshot(options, "1"), ready=has_config(options))
    worker.install_signal_handlers()
    flusher = asyncio.get_running_loop().create_task(telemetry.flush_periodically())
    await worker.became_ready.wait()  # with a control server: once the first snapshot is applied
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    await worker.stopped.wait()
    flusher.cancel()
    telemetry.close()
    return 0


async def _supervisor_loop(options: ProxyOptions, telemetry: Telemetry, workers: dict[int, int]) -> int:
    loop = asyncio.get_running_loop()
    ready: set[int] = set()
    stopping = asyncio.Event()
    all_exited = asyncio.Event()
    state = {"snapshot": load_snapshot(options, "1"), "fingerprint": config_fingerprint(options.config_paths)}

    def on_ready(pid: int, fd: int) -> None:
        loop.remove_reader(fd)
        if os.read(fd, 1):
            ready.add(pid)
        os.close(fd)

    def watch(pid: int, ready_fd: int) -> None:
        """Readiness from the worker's pipe; its exit from a pidfd (uvloop has no SIGCHLD handler)."""
        loop.add_reader(ready_fd, on_ready, pid, ready_fd)
        exit_fd = os.pidfd_open(pid)
        loop.add_reader(exit_fd, exited, pid, exit_fd)


    def signal_workers(signum: int) -> None:
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop() -> None:
        stopping.set()
        ready.clear()
        signal_workers(signal.SIGTERM)

    def exited(pid: int, exit_fd: int) -> None:
        loop.remove_reader(exit_fd)
        os.close(exit_fd)
        _, status = os.waitpid(pid, 0)
        workers.pop(pid, None)
        ready.discard(pid)
        telemetry.worker_exit(pid)
        if not stopping.is_set():
            log.error("worker %d exited (status %d); starting a new one", pid, status)
            new_pid, fd = _fork_worker(options, telemetry)
            workers[new_pid] = fd
            watch(new_pid, fd)
        if not workers:
            all_exited.set()

    reloads = ReloadRecord(telemetry.metrics, state["snapshot"].version)
    reloading = asyncio.Lock()

    async def install(config, version: str) -> None:
        state["snapshot"] = compile_snapshot(config, options.identity, version)
        signal_workers(signal.SIGHUP)

    async def reload() -> None:
        """Checked here, off the loop, before the workers reload (each off its own loop)."""
        async with reloading:
            state["fingerprint"] = config_fingerprint(options.config_paths)
            await reload_from_disk(options, str(int(state["snapshot"].version) + 1), install, reloads)

    for pid, fd in list(workers.items()):
        watch(pid, fd)
    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)
    async def apply_pushed(config, version: str) -> None:
        """A snapshot from the control server: validated here, persisted, then each worker
        reloads it from the data directory (as after SIGHUP)."""
        try:
            snapshot = compile_snapshot(config, options.identity, version)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigRejected(f"cannot compile configuration: {error}") from error
        try:
            _check_new_listeners(state["snapshot"], snapshot)
        except OSError as error:
            raise ConfigRejected(f"cannot open a listener: {error}") from error
        SnapshotStore(options.control.data_dir).save(config, version)
        state["snapshot"] = snapshot
        signal_workers(signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    client_tasks = []
    certs = CertificateStore()  # the workers load their own; this one answers /certs and /ready
    identity = workload_identity(options, certs)  # with a token: filled by the CA, kept in the cert dir
    cert_source = CertDirSource(options.cert_dir, certs) if options.cert_dir and identity is None else None
    if cert_source is not None:
        cert_source.load()
        cert_source.start()
    if identity is not None:
        client_tasks.append(loop.create_task(identity.run()))
    if options.control is not None:
        apply = watch_concurrency(apply_pushed, options.identity, options.concurrency, options.control.data_dir, False)
        client_tasks.append(loop.create_task(control_client(options, apply, identity).run()))
    endpoints = AdminEndpoints(options, telemetry, lambda: state["snapshot"],
                               ready_with(identity, lambda: len(ready) == options.concurrency and not stopping.is_set()),
                               quit=stop, config_status=reloads.dump, certs=certs, cert_source=cert_source)
    await endpoints.start()
    while not stopping.is_set() and options.watch and options.control is None:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            if config_fingerprint(options.config_paths) != state["fingerprint"]:
                await reload()
    await all_exited.wait()
    for task in client_tasks:
        task.cancel()
    if cert_source is not None:
        cert_source.close()
    endpoints.close()
    telemetry.close()
    return 0
